package event_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
)

func TestCheckJSONText(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		`{"a":"b"}`, `{"a":"\\u0000"}`, `{"a":"\u00e9\u20ac"}`, `{"a":"\ud83d\ude00"}`, `{"a":"é €"}`, `{"a":"\\"}`, `{"a":"\"\\\u0041"}`,
	} {
		require.NoError(t, event.CheckJSONText([]byte(ok)), ok)
	}
	for _, bad := range []string{
		`{"a":"\u0000"}`, `{"\u0000":1}`, `{"a":"\\\u0000"}`, "{\"a\":\"\xff\"}", `{"a":"\ud83d"}`, `{"a":"\ud83dx"}`,
		`{"a":"\ude00"}`, `{"a":"\ud83d\u0041"}`,
	} {
		require.ErrorIs(t, event.CheckJSONText([]byte(bad)), event.ErrText, bad)
	}
	require.NoError(t, event.CheckText("acme/api é"))
	require.ErrorIs(t, event.CheckText("a\x00b"), event.ErrText)
	require.ErrorIs(t, event.CheckText("a\xffb"), event.ErrText)
}

// A native event holding text Postgres cannot keep is refused at the edge, not dead-lettered
// after a 202.
func TestDecodeRefusesUnstorableText(t *testing.T) {
	t.Parallel()
	for name, raw := range map[string]string{
		"NUL escape":     `{"type":"commit","pipeline_id":"api\u0000","commit_id":"a","timestamp":1}`,
		"lone surrogate": `{"type":"commit","pipeline_id":"api","commit_id":"a","timestamp":1,"note":"\ud800"}`,
		"invalid UTF-8":  "{\"type\":\"commit\",\"pipeline_id\":\"api\xff\",\"commit_id\":\"a\",\"timestamp\":1}",
	} {
		_, err := event.Decode([]byte(raw), time.Now())
		require.ErrorIs(t, err, event.ErrInvalid, name)
		require.Contains(t, err.Error(), "text Postgres cannot store", name)
	}
}
