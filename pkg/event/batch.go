package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Errors of a request body as a whole, before any event is looked at.
var (
	// ErrMalformed: the body is not JSON (or not NDJSON), or holds no event.
	ErrMalformed = errors.New("malformed body")
	// ErrTooMany: the batch holds more events than allowed.
	ErrTooMany = errors.New("too many events in one request")
)

// Split returns the raw events of a request body: a single JSON object, a JSON array of
// objects, or (ndjson) one object per line. batch says whether the body was a list, so that
// problems can name the index of the bad event. It does not validate the events themselves.
func Split(body []byte, ndjson bool, max int) (raws []json.RawMessage, batch bool, err error) {
	if ndjson {
		raws, err = splitLines(body)
		batch = true
	} else {
		raws, batch, err = splitJSON(body)
	}
	if err != nil {
		return nil, false, err
	}
	if len(raws) == 0 {
		return nil, false, fmt.Errorf("%w: the body holds no event", ErrMalformed)
	}
	if len(raws) > max {
		return nil, false, fmt.Errorf("%w: %d events, at most %d are allowed; split the batch", ErrTooMany, len(raws), max)
	}
	return raws, batch, nil
}

func splitJSON(body []byte) ([]json.RawMessage, bool, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, false, nil
	}
	lead := len(body) - len(bytes.TrimLeft(body, " \t\r\n"))
	if trimmed[0] != '[' {
		if !json.Valid(trimmed) {
			return nil, false, fmt.Errorf("%w: %s", ErrMalformed, syntaxError(trimmed, lead))
		}
		// Cloned: the HTTP server reuses the body buffer once the handler returns.
		return []json.RawMessage{bytes.Clone(trimmed)}, false, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(trimmed, &raws); err != nil {
		return nil, false, fmt.Errorf("%w: %s", ErrMalformed, syntaxError(trimmed, lead))
	}
	return raws, true, nil
}

func splitLines(body []byte) ([]json.RawMessage, error) {
	var raws []json.RawMessage
	for n, line := range bytes.Split(body, []byte("\n")) {
		lead := len(line) - len(bytes.TrimLeft(line, " \t\r\n"))
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			return nil, fmt.Errorf("%w: line %d: %s", ErrMalformed, n+1, syntaxError(line, lead))
		}
		raws = append(raws, json.RawMessage(bytes.Clone(line)))
	}
	return raws, nil
}

// syntaxError says where the JSON breaks, in a client's terms: lead is the whitespace trimmed
// off before data, so the offset counts from the start of what the client sent.
func syntaxError(data []byte, lead int) string {
	var v any
	err := json.Unmarshal(data, &v)
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("invalid JSON at byte %d: %s", syn.Offset+int64(lead), syn.Error())
	}
	if err != nil {
		return "invalid JSON: " + err.Error()
	}
	return "invalid JSON"
}

// DecodeAll decodes every event of a request. A request is accepted whole or not at all, so
// the error lists the problems of every bad event, each with its index when batch is set.
func DecodeAll(raws []json.RawMessage, batch bool, receivedAt time.Time) ([]Event, error) {
	events := make([]Event, 0, len(raws))
	var problems []Problem
	for i, raw := range raws {
		e, err := Decode(raw, receivedAt)
		var verr *ValidationError
		switch {
		case errors.As(err, &verr):
			for _, p := range verr.Problems {
				if batch {
					p.Index = &i
				}
				problems = append(problems, p)
			}
		case err != nil:
			return nil, err
		default:
			events = append(events, e)
		}
	}
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	return events, nil
}
