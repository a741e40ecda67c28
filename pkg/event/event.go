// Package event is the native DevOpstic event (POST /events): its fields, its validation and
// its identity.
//
// Decoding is a pure function of the event's bytes and the time it was received, so the ingest
// (which validates at the edge) and the writer (which maps the stored message to table rows,
// again on every replay) always agree on what an event says and on its id.
package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Types of native event, as in the original DevOpstic API.
const (
	TypeCommit         = "commit"
	TypeSubmit         = "submit"
	TypeApprove        = "approve"
	TypeDeploy         = "deploy"
	TypeIncidentStatus = "incident_status_change"
)

// Statuses. For a deploy, the outcome; for an incident, failure opens and success resolves.
const (
	StatusSuccess = "success"
	StatusFailure = "failure"
)

// Limits on field sizes; they keep one event small enough to be a stream message and a row.
const (
	MaxIDLength      = 128
	MaxNameLength    = 256
	MaxCommitsPerJob = 10000
)

// Event is one validated native event. ID is always set: the client's id scoped by its
// pipeline (see ScopedID), or a hash of the content (see contentID).
type Event struct {
	ID            string
	Type          string
	PipelineID    string
	Environment   string
	CommitID      string
	Commits       []string
	PullRequestID *int64
	DeploymentID  string
	IncidentID    string
	Status        string
	Timestamp     time.Time
	// TimeInferred says Timestamp is the receive time because the event carried none.
	TimeInferred bool
	// ClientID is the client's id as sent (trimmed); "" when it sent none, and ID is then the
	// content hash.
	ClientID string
}

// ErrInvalid is wrapped by every validation error, so callers can map it to a 400.
var ErrInvalid = errors.New("invalid event")

// Problem names one bad field. Index is the event's position in a batch, nil for a single event.
type Problem struct {
	Index   *int   `json:"index,omitempty"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every problem found, so a client fixes them all in one round.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	parts := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		prefix := ""
		if p.Index != nil {
			prefix = fmt.Sprintf("[%d].", *p.Index)
		}
		parts = append(parts, prefix+p.Field+": "+p.Message)
	}
	return "invalid event: " + strings.Join(parts, "; ")
}

// Unwrap lets errors.Is(err, ErrInvalid) match.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Decode parses and validates one native event given as a JSON object. receivedAt stands in
// for a missing timestamp and is then part of the event's hash.
func Decode(raw []byte, receivedAt time.Time) (Event, error) {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return Event{}, &ValidationError{Problems: []Problem{{Field: "", Message: "must be a JSON object, not " + typeErr.Value}}}
		}
		return Event{}, &ValidationError{Problems: []Problem{{Field: "", Message: "is not valid JSON: " + err.Error()}}}
	}
	if fields == nil {
		return Event{}, &ValidationError{Problems: []Problem{{Field: "", Message: "must be a JSON object, not null"}}}
	}
	if rest := bytes.TrimSpace(raw[dec.InputOffset():]); len(rest) > 0 {
		return Event{}, &ValidationError{Problems: []Problem{{Field: "", Message: "has data after the JSON object"}}}
	}
	// Refused here rather than dead-lettered by the writer after a 202: what jsonb cannot keep.
	if err := CheckJSONText(raw); err != nil {
		return Event{}, &ValidationError{Problems: []Problem{{Field: "", Message: err.Error()}}}
	}

	var (
		e    Event
		errs []Problem
	)
	bad := func(field, msg string) { errs = append(errs, Problem{Field: field, Message: msg}) }

	e.Type, errs = readString(fields, "type", MaxNameLength, errs)
	e.PipelineID, errs = readString(fields, "pipeline_id", MaxNameLength, errs)
	e.Environment, errs = readString(fields, "environment", MaxNameLength, errs)
	e.CommitID, errs = readString(fields, "commit_id", MaxNameLength, errs)
	e.DeploymentID, errs = readStringOrInt(fields, "deployment_id", errs)
	e.IncidentID, errs = readStringOrInt(fields, "incident_id", errs)
	e.Status, errs = readString(fields, "status", MaxNameLength, errs)
	e.ID, errs = readString(fields, "id", MaxIDLength, errs)
	e.PullRequestID, errs = readPullRequest(fields, errs)
	e.Commits, errs = readCommits(fields, errs)
	var hasTime bool
	e.Timestamp, hasTime, errs = readTimestamp(fields, errs)

	switch e.Type {
	case TypeCommit, TypeSubmit, TypeApprove, TypeDeploy, TypeIncidentStatus:
	case "":
		if !hasProblem(errs, "type") {
			bad("type", "is required")
		}
	default:
		bad("type", "must be one of commit, submit, approve, deploy, incident_status_change")
	}
	if e.PipelineID == "" && !hasProblem(errs, "pipeline_id") {
		bad("pipeline_id", "is required")
	}
	needsEnv := e.Type == TypeDeploy || e.Type == TypeIncidentStatus
	if needsEnv && e.Environment == "" && !hasProblem(errs, "environment") {
		bad("environment", "is required for "+e.Type+" events")
	}
	needsCommit := e.Type == TypeCommit || e.Type == TypeSubmit || e.Type == TypeApprove || e.Type == TypeDeploy
	if needsCommit && e.CommitID == "" && !hasProblem(errs, "commit_id") {
		bad("commit_id", "is required for "+e.Type+" events")
	}
	if e.Type == TypeIncidentStatus && e.IncidentID == "" && !hasProblem(errs, "incident_id") {
		bad("incident_id", "is required for incident_status_change events")
	}
	if len(e.Commits) > 0 && e.Type != TypeDeploy && e.Type != "" {
		bad("commits", "is only meaningful on deploy events")
	}
	switch e.Status {
	case "":
		e.Status = StatusSuccess
	case StatusSuccess, StatusFailure:
	default:
		if !hasProblem(errs, "status") {
			bad("status", `must be "success" or "failure"`)
		}
	}
	if e.ID != "" && !printable(e.ID) {
		bad("id", "must be printable ASCII without spaces")
	}
	if len(errs) > 0 {
		return Event{}, &ValidationError{Problems: errs}
	}

	if !hasTime {
		e.Timestamp = receivedAt.UTC()
		e.TimeInferred = true
	}
	if e.ID != "" {
		e.ClientID = e.ID
		e.ID = ScopedID(e.PipelineID, e.ClientID)
	} else {
		e.ID = contentID(e)
	}
	return e, nil
}

// ScopedID is the id of an event whose client gave one: the client's id within its source and
// pipeline, as "native:<pipeline>:<id>" with the pipeline percent-encoded (so that no other
// pair of pipeline and id spells the same, and the id is safe in a NATS header). A client's id
// is unique per pipeline: one pipeline's events cannot take another's ids. It is the stream's
// Nats-Msg-Id and events.id; webhook ids ("github:...") and content ids ("sha256-...") never
// start the same way.
//
// Before ids were scoped, the client's id alone was both; the writer keeps those messages'
// ids (it takes a message's id from its Nats-Msg-Id), so replays do not double them.
func ScopedID(pipelineID, clientID string) string {
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(Source)+len(pipelineID)+len(clientID)+2)
	b = append(b, Source...)
	b = append(b, ':')
	for i := 0; i < len(pipelineID); i++ {
		c := pipelineID[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("-._~/@", c) >= 0:
			b = append(b, c)
		default:
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	b = append(b, ':')
	return string(append(b, clientID...))
}

// contentID is the id of an event that has none: a hash of what it says, its time included,
// so that a CI job retrying the same POST is counted once while the same commit deployed again
// later is a new deployment.
func contentID(e Event) string {
	commits := slices.Clone(e.Commits)
	slices.Sort(commits)
	var pr string
	if e.PullRequestID != nil {
		pr = strconv.FormatInt(*e.PullRequestID, 10)
	}
	// Field order is fixed by this list; changing it changes every derived id.
	parts := []string{e.Type, e.PipelineID, e.Environment, e.CommitID, strconv.Itoa(len(commits))}
	parts = append(parts, commits...)
	parts = append(parts, pr, e.DeploymentID, e.IncidentID, e.Status, e.Timestamp.UTC().Format(time.RFC3339Nano))
	// Each part length-prefixed ("<len>:<part>;") so that no two different field lists hash
	// the same bytes.
	var b []byte
	for _, p := range parts {
		b = strconv.AppendInt(b, int64(len(p)), 10)
		b = append(append(append(b, ':'), p...), ';')
	}
	sum := sha256.Sum256(b)
	return "sha256-" + hex.EncodeToString(sum[:16])
}

func hasProblem(errs []Problem, field string) bool {
	return slices.ContainsFunc(errs, func(p Problem) bool { return p.Field == field })
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// readString reads an optional string field; absent and null are "".
func readString(fields map[string]json.RawMessage, name string, maxLen int, errs []Problem) (string, []Problem) {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		return "", errs
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", append(errs, Problem{Field: name, Message: "must be a string"})
	}
	if len(s) > maxLen {
		return "", append(errs, Problem{Field: name, Message: fmt.Sprintf("must be at most %d characters", maxLen)})
	}
	return strings.TrimSpace(s), errs
}

// readStringOrInt reads an identifier that tools send either as a string or as a number.
func readStringOrInt(fields map[string]json.RawMessage, name string, errs []Problem) (string, []Problem) {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		return "", errs
	}
	// json.Number would also take a string that looks like a number ("1.5"): strings go first.
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && trimmed[0] == '"' {
		return readString(fields, name, MaxNameLength, errs)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", append(errs, Problem{Field: name, Message: "must be a string or an integer"})
	}
	if _, err := strconv.ParseInt(n.String(), 10, 64); err != nil {
		return "", append(errs, Problem{Field: name, Message: "must be a string or an integer"})
	}
	return n.String(), errs
}

func readPullRequest(fields map[string]json.RawMessage, errs []Problem) (*int64, []Problem) {
	raw, ok := fields["pull_request_id"]
	if !ok || isNull(raw) {
		return nil, errs
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return nil, append(errs, Problem{Field: "pull_request_id", Message: "must be an integer"})
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || v <= 0 {
		return nil, append(errs, Problem{Field: "pull_request_id", Message: "must be a positive integer"})
	}
	return &v, errs
}

func readCommits(fields map[string]json.RawMessage, errs []Problem) ([]string, []Problem) {
	raw, ok := fields["commits"]
	if !ok || isNull(raw) {
		return nil, errs
	}
	var commits []string
	if err := json.Unmarshal(raw, &commits); err != nil {
		return nil, append(errs, Problem{Field: "commits", Message: "must be an array of strings"})
	}
	if len(commits) > MaxCommitsPerJob {
		return nil, append(errs, Problem{Field: "commits", Message: fmt.Sprintf("must list at most %d commits", MaxCommitsPerJob)})
	}
	for i, c := range commits {
		c = strings.TrimSpace(c)
		if c == "" || len(c) > MaxNameLength {
			return nil, append(errs, Problem{Field: fmt.Sprintf("commits[%d]", i), Message: fmt.Sprintf("must be a commit id of 1 to %d characters", MaxNameLength)})
		}
		commits[i] = c
	}
	return commits, errs
}

// Epoch seconds beyond this are almost surely milliseconds (it is the year 5138).
const maxEpochSeconds = 1e11

// epoch turns epoch seconds into a time, reading a decimal fraction digit by digit so that
// 1561003507.123 is exactly .123 s (a float64 would make it .122999907), and the same instant
// sent as epoch seconds or as RFC 3339 gets the same id. Exponent forms fall back to secs.
func epoch(text string, secs float64) time.Time {
	whole, frac, hasFrac := strings.Cut(text, ".")
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || strings.ContainsAny(frac, "eE") {
		intPart, fracPart := math.Modf(secs)
		return time.Unix(int64(intPart), int64(math.Round(fracPart*1e9))).UTC()
	}
	var nanos int64
	if hasFrac {
		digits := (frac + "000000000")[:9]
		nanos, _ = strconv.ParseInt(digits, 10, 64)
	}
	return time.Unix(w, nanos).UTC()
}

func readTimestamp(fields map[string]json.RawMessage, errs []Problem) (time.Time, bool, []Problem) {
	raw, ok := fields["timestamp"]
	if !ok || isNull(raw) {
		return time.Time{}, false, errs
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil && bytes.TrimSpace(raw)[0] != '"' {
		secs, err := n.Float64()
		switch {
		case err != nil || math.IsNaN(secs) || secs < 0:
			return time.Time{}, false, append(errs, Problem{Field: "timestamp", Message: "must be epoch seconds (a non-negative number) or an RFC 3339 string"})
		case secs >= maxEpochSeconds:
			return time.Time{}, false, append(errs, Problem{Field: "timestamp", Message: "looks like epoch milliseconds; send epoch seconds"})
		}
		return epoch(n.String(), secs), true, errs
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, false, append(errs, Problem{Field: "timestamp", Message: "must be epoch seconds or an RFC 3339 string"})
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, false, append(errs, Problem{Field: "timestamp", Message: fmt.Sprintf("%q is not an RFC 3339 time such as 2026-11-25T10:00:00Z", s)})
	}
	if t.Year() < 1970 {
		return time.Time{}, false, append(errs, Problem{Field: "timestamp", Message: "must not be before 1970"})
	}
	return t.UTC(), true, errs
}
