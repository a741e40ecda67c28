package webhook

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/event"
)

// MaxIDLength bounds an id in bytes, as the native API bounds its names: an id becomes a
// deployment's or an incident's key, which Postgres indexes, and an index entry has a limit.
const MaxIDLength = event.MaxNameLength

// ID is an identifier (of a deployment, a status, a pull request, an issue, an incident, a
// pipeline, a job) that the real source writes as a JSON number and tools imitating it may write
// as a string: Four Keys' data generator sends a deployment_status id of 40 hex digits. Both
// read as text: 10 and "10" are the same ID, so a deployment sent once each way is one
// deployment. A string is kept as sent, but for surrounding spaces; a number as JSON wrote it
// (1.5 stays 1.5: json.Number read ids so before, and the writer maps stored deliveries again,
// so what the ingest took then must still map). null or absent is "".
type ID string

var (
	idType   = reflect.TypeFor[ID]()
	timeType = reflect.TypeFor[Time]()
)

// UnmarshalJSON reads a string or a number. Its errors are *json.UnmarshalTypeError, which
// encoding/json completes with the field's path: the 400 names the field.
func (id *ID) UnmarshalJSON(b []byte) error {
	s, _, err := scalar(b, idType, "a string or a number")
	switch {
	case err != nil:
		return err
	case len(s) > MaxIDLength:
		return &json.UnmarshalTypeError{Value: fmt.Sprintf("an id of %d bytes (at most %d)", len(s), MaxIDLength), Type: idType}
	}
	*id = ID(s)
	return nil
}

// String is the id as text: a number as JSON wrote it (10 is "10").
func (id ID) String() string { return string(id) }

// Number reads id as a positive integer, for what is kept in a bigint column (a pull request's
// number): 5 and "5" are 5. ok is false for an id that is empty or that is no positive integer
// within int64 ("PR-5", "0", 99999999999999999999).
func (id ID) Number() (n int64, ok bool) {
	n, err := strconv.ParseInt(string(id), 10, 64)
	return n, err == nil && n > 0
}

// PullRequest reads a pull or merge request's number, the payload's field: nil when it is
// absent. A number that is no positive integer cannot be a pull_request_id (bigint); the change
// is kept without it, with a warning, and the delivery's payload keeps what was sent.
func (m *Mapper) PullRequest(field string, id ID) *int64 {
	if id == "" {
		return nil
	}
	n, ok := id.Number()
	if !ok {
		m.Warnings = append(m.Warnings, fmt.Sprintf("%s %q is not a positive integer: the change is kept without a pull request number", field, string(id)))
		return nil
	}
	return &n
}

// Time is a timestamp as a source writes it, or as a tool imitating it does: a string, kept as
// sent and read by event.ParseTime when mapped (so that its error names the field), or epoch
// seconds as a JSON number, kept in RFC 3339. null or absent is "".
type Time string

// UnmarshalJSON reads a string, or a number of epoch seconds.
func (t *Time) UnmarshalJSON(b []byte) error {
	s, number, err := scalar(b, timeType, "a time (a string, or epoch seconds)")
	if err != nil {
		return err
	}
	if number {
		at, err := event.EpochSeconds(s)
		if err != nil {
			return &json.UnmarshalTypeError{Value: "the number " + abbreviate(s) + " (" + err.Error() + ")", Type: timeType}
		}
		s = at.Format(time.RFC3339Nano)
	}
	*t = Time(s)
	return nil
}

// String is the time as sent, or in RFC 3339 when it was epoch seconds.
func (t Time) String() string { return string(t) }

// scalar reads a JSON string (trimmed of spaces), a number (its text; number is true), or null
// (""). Anything else is an UnmarshalTypeError of typ saying what was wanted.
func scalar(b []byte, typ reflect.Type, want string) (text string, number bool, err error) {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		return "", false, nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return "", false, fmt.Errorf("%s: %w", typ, err)
		}
		return strings.TrimSpace(s), false, nil
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		return string(b), true, nil
	}
	kind := map[byte]string{'{': "an object", '[': "an array", 't': "a boolean", 'f': "a boolean"}[b[0]]
	return "", false, &json.UnmarshalTypeError{Value: cmp.Or(kind, "a value") + ", not " + want, Type: typ}
}

// abbreviate shows a number in an error without repeating a large one.
func abbreviate(s string) string {
	if len(s) > 24 {
		return s[:20] + "..."
	}
	return s
}
