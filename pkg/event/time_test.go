package event_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
)

func TestParseTime(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		require.NoError(t, err)
		return v.UTC()
	}
	for in, want := range map[string]time.Time{
		"2019-05-15T15:20:41Z":           at("2019-05-15T15:20:41Z"),
		"2015-05-05T19:40:15-04:00":      at("2015-05-05T23:40:15Z"),
		"2019-05-15T15:20:41.123456789Z": at("2019-05-15T15:20:41.123456789Z"),
		"2019-05-15T15:20:41.5+02:00":    at("2019-05-15T13:20:41.5Z"),
		"2019-05-15 15:20:41Z":           at("2019-05-15T15:20:41Z"),
		"2019-05-15 15:20:41.25+0000":    at("2019-05-15T15:20:41.25Z"),
		"2019-03-15 08:45:01 UTC":        at("2019-03-15T08:45:01Z"),
		"2019-03-15 08:45:01 +0200":      at("2019-03-15T06:45:01Z"),
		"2019-03-15T08:45:01+0200":       at("2019-03-15T06:45:01Z"),
		"2019-03-15T08:45:01":            at("2019-03-15T08:45:01Z"),
		"2019-03-15 08:45:01.1":          at("2019-03-15T08:45:01.1Z"),
		"  2019-03-15T08:45:01Z  ":       at("2019-03-15T08:45:01Z"),
		// Near variants that tools imitating a source write.
		"2019-03-15 08:45:01.123456":      at("2019-03-15T08:45:01.123456Z"), // Python's str(datetime)
		"2019-03-15t08:45:01z":            at("2019-03-15T08:45:01Z"),        // RFC 3339 allows lower case
		"2019-03-15T08:45:01.5z":          at("2019-03-15T08:45:01.5Z"),
		"2019-03-15T10:45:01+02":          at("2019-03-15T08:45:01Z"), // Postgres: hours only
		"2019-03-15 10:45:01.25+02":       at("2019-03-15T08:45:01.25Z"),
		"2019-03-15 09:45:01 +0100 CET":   at("2019-03-15T08:45:01Z"), // Go's time.String: the offset counts
		"2019-03-15 08:45:01.5 +0000 UTC": at("2019-03-15T08:45:01.5Z"),
		"2019-03-15 08:45:01 GMT":         at("2019-03-15T08:45:01Z"),
	} {
		got, err := event.ParseTime(in)
		require.NoError(t, err, in)
		require.True(t, want.Equal(got), "%s: got %s, want %s", in, got, want)
		require.Equal(t, time.UTC, got.Location(), in)
	}
	for _, bad := range []string{"", "yesterday", "2019-13-15T08:45:01Z", "1557933641", "2019-03-15 08:45:01 CEST", "2019-03-15",
		"2019-03-15T08:45:01+2", "2019-03-15t08:45", "2019-03-15 08:45:01 +01:00 CET"} {
		_, err := event.ParseTime(bad)
		require.ErrorIs(t, err, event.ErrBadTime, bad)
	}
}

func TestEpochSeconds(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Time{
		"1793628000":     time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC),
		"1793628000.123": time.Date(2026, 11, 2, 14, 0, 0, 123e6, time.UTC), // exactly, not .122999907
		"0":              time.Unix(0, 0).UTC(),
	} {
		got, err := event.EpochSeconds(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"1793628000000", "-1", "x"} {
		_, err := event.EpochSeconds(bad)
		require.ErrorIs(t, err, event.ErrBadTime, bad)
	}
}
