package event_test

import (
	"strings"
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

// The bounds are Postgres's, measured on Postgres 15: numeric_in refuses what is refused here,
// and FuzzAcceptedIsWritable (pkg/api) checks that what is accepted really is stored.
func TestCheckJSONTextNumbers(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		`1`, `-0`, `0.5`, `1e131071`, `9.99e131071`, `-1E+131071`, `0.1e131072`, `1e-16383`, `-9.99e-16381`,
		`0e-16383`, `0e999999999`, `1E+0000000000000000000000001`, strings.Repeat("9", 131072),
		"0." + strings.Repeat("0", 16382) + "1", `["1e1000000"]`, `{"1e1000000":1}`,
	} {
		require.NoError(t, event.CheckJSONText([]byte(`{"n":`+ok+`}`)), ok)
	}
	for _, bad := range []string{
		`1e1000000`, `-1e131072`, `10e131071`, `0.1e131073`, `1e-16384`, `1.5e-16383`, `100e-16384`, `0e-16384`,
		`0e1073741823`, `1e2147483647`, strings.Repeat("9", 131073), "0." + strings.Repeat("0", 16383) + "1",
		`[1,2,1e999999]`,
	} {
		require.ErrorIs(t, event.CheckJSONText([]byte(`{"n":`+bad+`}`)), event.ErrNumber, bad[:min(len(bad), 30)])
	}
}

func TestCheckJSONTextDepth(t *testing.T) {
	t.Parallel()
	nested := func(n int) []byte {
		return []byte(strings.Repeat(`{"a":[`, n/2) + strings.Repeat(`]}`, n/2))
	}
	require.NoError(t, event.CheckJSONText(nested(event.MaxDepth)))
	require.NoError(t, event.CheckJSONText([]byte(`{"a":"`+strings.Repeat("[", 1000)+`"}`)), "brackets in a string")
	require.ErrorIs(t, event.CheckJSONText(nested(event.MaxDepth+2)), event.ErrDepth)
}

func TestCheckHeader(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "Push Hook", "é"} {
		require.NoError(t, event.CheckHeader(ok), ok)
	}
	for _, bad := range []string{"\xff\xfe", "a\x00b", "a\x01b", "a\r\nb", "\x7f", "\xed\xa0\x80"} {
		require.ErrorIs(t, event.CheckHeader(bad), event.ErrText, bad)
	}
}
