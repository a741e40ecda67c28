package event_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
)

func raws(ss ...string) []json.RawMessage {
	out := make([]json.RawMessage, len(ss))
	for i, s := range ss {
		out[i] = json.RawMessage(s)
	}
	return out
}

func TestSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		ndjson    bool
		max       int
		want      []json.RawMessage
		wantBatch bool
		wantErr   error
		wantMsg   string // a part of the error's message
	}{
		{
			name: "single object",
			body: "  {\"type\":\"commit\"}\n",
			max:  10,
			want: raws(`{"type":"commit"}`),
		},
		{
			name:      "array",
			body:      `[{"type":"commit"}, {"type":"deploy"}]`,
			max:       10,
			want:      raws(`{"type":"commit"}`, `{"type":"deploy"}`),
			wantBatch: true,
		},
		{
			name:      "array of one",
			body:      `[{"type":"commit"}]`,
			max:       1,
			want:      raws(`{"type":"commit"}`),
			wantBatch: true,
		},
		{
			name:      "ndjson with blank lines and CRLF",
			body:      "\r\n{\"a\":1}\r\n\r\n  \n{\"b\":2}\r\n{\"c\":3}",
			ndjson:    true,
			max:       3,
			want:      raws(`{"a":1}`, `{"b":2}`, `{"c":3}`),
			wantBatch: true,
		},
		{
			name:      "ndjson of one line",
			body:      `{"a":1}`,
			ndjson:    true,
			max:       1,
			want:      raws(`{"a":1}`),
			wantBatch: true,
		},
		{name: "empty body", body: "", max: 10, wantErr: event.ErrMalformed, wantMsg: "holds no event"},
		{name: "blank body", body: " \n\t ", max: 10, wantErr: event.ErrMalformed, wantMsg: "holds no event"},
		{name: "empty array", body: "[]", max: 10, wantErr: event.ErrMalformed, wantMsg: "holds no event"},
		{name: "empty ndjson", body: "", ndjson: true, max: 10, wantErr: event.ErrMalformed, wantMsg: "holds no event"},
		{name: "blank ndjson", body: "\r\n\n  \n", ndjson: true, max: 10, wantErr: event.ErrMalformed, wantMsg: "holds no event"},
		{
			name:    "invalid object",
			body:    `{"type":}`,
			max:     10,
			wantErr: event.ErrMalformed,
			wantMsg: "invalid JSON at byte 9",
		},
		{
			name:    "invalid array",
			body:    `[{"type":"commit"},]`,
			max:     10,
			wantErr: event.ErrMalformed,
			wantMsg: "invalid JSON at byte 20",
		},
		{
			name:    "truncated array",
			body:    `[{"type":"commit"}`,
			max:     10,
			wantErr: event.ErrMalformed,
			wantMsg: "invalid JSON",
		},
		{
			name:    "two objects without ndjson",
			body:    "{\"a\":1}\n{\"b\":2}",
			max:     10,
			wantErr: event.ErrMalformed,
			wantMsg: "invalid JSON at byte 9",
		},
		{
			// The offset is a position in the body the client sent.
			name:    "invalid object after leading blank lines",
			body:    "\n\n{\"type\":}",
			max:     10,
			wantErr: event.ErrMalformed,
			wantMsg: "invalid JSON at byte 11",
		},
		{
			name:    "ndjson bad line",
			body:    "{\"a\":1}\n\n{\"b\":\n{\"c\":3}",
			ndjson:  true,
			max:     10,
			wantErr: event.ErrMalformed,
			wantMsg: "line 3: ",
		},
		{
			name:    "ndjson bad line after CRLF lines",
			body:    "{\"a\":1}\r\n{\"b\":2}\r\nnope\r\n",
			ndjson:  true,
			max:     10,
			wantErr: event.ErrMalformed,
			wantMsg: "line 3: invalid JSON at byte 2",
		},
		{
			name:    "array over the limit",
			body:    `[{},{},{}]`,
			max:     2,
			wantErr: event.ErrTooMany,
			wantMsg: "3 events, at most 2",
		},
		{
			name:    "ndjson over the limit",
			body:    "{}\n{}\n{}\n",
			ndjson:  true,
			max:     2,
			wantErr: event.ErrTooMany,
			wantMsg: "3 events, at most 2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, batch, err := event.Split([]byte(tt.body), tt.ndjson, tt.max)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Contains(t, err.Error(), tt.wantMsg)
				require.Nil(t, got)
				require.False(t, batch)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantBatch, batch)
			require.Equal(t, tt.want, got)
		})
	}
}

// The HTTP server reuses its body buffer once the handler returns; Split must not alias it.
func TestSplitDoesNotAliasBody(t *testing.T) {
	t.Parallel()
	for _, ndjson := range []bool{false, true} {
		body := []byte(`{"a":1}`)
		got, _, err := event.Split(body, ndjson, 10)
		require.NoError(t, err)
		copy(body, `{"b":2}`)
		require.Equal(t, raws(`{"a":1}`), got)
	}
}

func TestDecodeAll(t *testing.T) {
	t.Parallel()
	good := `{"type":"commit","pipeline_id":"shop","commit_id":"abc","timestamp":1561003507}`
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	idx := func(i int) *int { return &i }

	t.Run("all valid", func(t *testing.T) {
		t.Parallel()
		events, err := event.DecodeAll(raws(good, `{"type":"submit","pipeline_id":"shop","commit_id":"abc"}`), true, at)
		require.NoError(t, err)
		require.Len(t, events, 2)
		require.Equal(t, event.TypeCommit, events[0].Type)
		require.Equal(t, event.TypeSubmit, events[1].Type)
		require.Equal(t, at, events[1].Timestamp)
		require.True(t, events[1].TimeInferred)
	})

	t.Run("batch problems carry the index", func(t *testing.T) {
		t.Parallel()
		events, err := event.DecodeAll(raws(
			good,
			`{"type":"commit","commit_id":"abc"}`,
			good,
			`{"type":"deploy","pipeline_id":"shop","commit_id":"abc","status":"ok"}`,
			`[]`,
		), true, at)
		require.ErrorIs(t, err, event.ErrInvalid)
		require.Nil(t, events)
		var verr *event.ValidationError
		require.ErrorAs(t, err, &verr)
		require.ElementsMatch(t, []event.Problem{
			{Index: idx(1), Field: "pipeline_id", Message: "is required"},
			{Index: idx(3), Field: "environment", Message: "is required for deploy events"},
			{Index: idx(3), Field: "status", Message: `must be "success" or "failure"`},
			{Index: idx(4), Field: "", Message: "must be a JSON object, not array"},
		}, verr.Problems)
		require.Contains(t, err.Error(), "[1].pipeline_id: is required")
		require.Contains(t, err.Error(), "[3].environment: is required for deploy events")
	})

	t.Run("single event has no index", func(t *testing.T) {
		t.Parallel()
		_, err := event.DecodeAll(raws(`{"type":"commit","commit_id":"abc"}`), false, at)
		require.ErrorIs(t, err, event.ErrInvalid)
		var verr *event.ValidationError
		require.ErrorAs(t, err, &verr)
		require.Equal(t, []event.Problem{{Field: "pipeline_id", Message: "is required"}}, verr.Problems)
		require.Equal(t, "invalid event: pipeline_id: is required", err.Error())
	})

	t.Run("problem index marshals as JSON", func(t *testing.T) {
		t.Parallel()
		_, err := event.DecodeAll(raws(good, `{"type":"commit","commit_id":"abc"}`), true, at)
		var verr *event.ValidationError
		require.ErrorAs(t, err, &verr)
		out, jerr := json.Marshal(verr.Problems)
		require.NoError(t, jerr)
		require.JSONEq(t, `[{"index":1,"field":"pipeline_id","message":"is required"}]`, string(out))
	})
}

func TestSplitThenDecodeAll(t *testing.T) {
	t.Parallel()
	var lines []string
	for range 3 {
		lines = append(lines, `{"type":"commit","pipeline_id":"shop","commit_id":"abc"}`)
	}
	rs, batch, err := event.Split([]byte(strings.Join(lines, "\r\n")), true, 3)
	require.NoError(t, err)
	events, err := event.DecodeAll(rs, batch, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	require.Len(t, events, 3)
	// The same content at the same receive time is the same event: a retried POST counts once.
	require.Equal(t, events[0].ID, events[1].ID)
	require.Equal(t, events[1].ID, events[2].ID)
}
