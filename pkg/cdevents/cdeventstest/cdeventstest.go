// Package cdeventstest carries a CDEvent as a CloudEvent, the way the CDEvents binding says a
// producer does (id, source, type and time from the CDEvent's context), in each HTTP mode: what
// the tests of the parser and of the service send.
package cdeventstest

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// Context reads the attributes a CloudEvent takes from a CDEvent's context.
func Context(t testing.TB, cdevent []byte) (id, source, typ, timestamp string) {
	t.Helper()
	var cd struct {
		Context struct{ ID, Source, Type, Timestamp string }
	}
	require.NoError(t, json.Unmarshal(cdevent, &cd))
	return cd.Context.ID, cd.Context.Source, cd.Context.Type, cd.Context.Timestamp
}

// WithID is cdevent with another context id: the spec's examples of one version share theirs.
func WithID(t testing.TB, cdevent []byte, id string) []byte {
	t.Helper()
	return Set(t, cdevent, func(cd map[string]any) { cd["context"].(map[string]any)["id"] = id })
}

// Set is cdevent changed by edit, as a decoded JSON object.
func Set(t testing.TB, cdevent []byte, edit func(cd map[string]any)) []byte {
	t.Helper()
	var cd map[string]any
	require.NoError(t, json.Unmarshal(cdevent, &cd))
	edit(cd)
	out, err := json.Marshal(cd)
	require.NoError(t, err)
	return out
}

// Structured is cdevent as a structured-mode CloudEvent (also a batch's element).
func Structured(t testing.TB, cdevent []byte) []byte {
	t.Helper()
	id, source, typ, timestamp := Context(t, cdevent)
	doc, err := json.Marshal(map[string]any{
		"specversion": "1.0", "id": id, "source": source, "type": typ, "time": timestamp,
		"datacontenttype": "application/json", "data": json.RawMessage(cdevent),
	})
	require.NoError(t, err)
	return doc
}

// Batch is cdevents as a batched-mode body.
func Batch(t testing.TB, cdevents ...[]byte) []byte {
	t.Helper()
	docs := make([]json.RawMessage, len(cdevents))
	for i, cd := range cdevents {
		docs[i] = Structured(t, cd)
	}
	body, err := json.Marshal(docs)
	require.NoError(t, err)
	return body
}

// BinaryHeaders are the headers of cdevent sent in binary mode (the body is cdevent itself),
// as name, value pairs.
func BinaryHeaders(t testing.TB, cdevent []byte) []string {
	t.Helper()
	id, source, typ, timestamp := Context(t, cdevent)
	return []string{"ce-specversion", "1.0", "ce-id", id, "ce-source", source, "ce-type", typ, "ce-time", timestamp}
}
