package event

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrBadTime: a timestamp in none of the forms ParseTime reads.
var ErrBadTime = errors.New("unrecognised timestamp")

// timeLayouts are the forms webhook senders write times in: RFC 3339 and its common variants.
// Fractional seconds of any precision are accepted by every layout (Go parses them after the
// seconds even when the layout has none).
var timeLayouts = []string{
	time.RFC3339,                    // 2019-05-15T15:20:41Z, 2015-05-05T19:40:15-04:00
	"2006-01-02T15:04:05Z0700",      // +0200 without a colon
	"2006-01-02 15:04:05Z07:00",     // a space for the T
	"2006-01-02 15:04:05Z0700",      //
	"2006-01-02 15:04:05 Z07:00",    // a space before the zone
	"2006-01-02 15:04:05 -0700",     // GitLab: 2019-03-15 08:45:01 +0200
	"2006-01-02 15:04:05 MST",       // GitLab: 2019-03-15 08:45:01 UTC
	"2006-01-02T15:04:05 MST",       //
	"2006-01-02T15:04:05Z07",        // an offset of hours only, as Postgres prints it: +02
	"2006-01-02 15:04:05Z07",        //
	"2006-01-02 15:04:05 -0700 MST", // Go's time.String: the offset counts, the name is a label
	"2006-01-02T15:04:05",           // no zone: UTC (Python's str(datetime) of a naive time)
	"2006-01-02 15:04:05",           //
}

// ParseTime reads a webhook timestamp: RFC 3339 and its near variants (timeLayouts; a t and a
// z in lower case, as RFC 3339 allows). A time without a zone is UTC; the result is in UTC. A
// string of digits is no time here: epoch seconds come as a JSON number (EpochSeconds).
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if len(s) > 10 && s[10] == 't' {
		s = s[:10] + "T" + s[11:]
	}
	if strings.HasSuffix(s, "z") {
		s = s[:len(s)-1] + "Z"
	}
	for _, layout := range timeLayouts {
		t, err := time.Parse(layout, s)
		if err != nil {
			continue
		}
		// Go accepts any zone abbreviation and treats an unknown one as UTC with no offset;
		// only UTC and GMT are unambiguous, so refuse the others rather than guess.
		if strings.HasSuffix(layout, " MST") && !strings.HasSuffix(layout, "-0700 MST") {
			if zone, _ := t.Zone(); zone != "UTC" && zone != "GMT" {
				continue
			}
		}
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%w: %q", ErrBadTime, s)
}

// EpochSeconds reads epoch seconds, a JSON number's text (1793628000, 1793628000.25), exactly
// to the nanosecond as the native API does, and refuses as it does what is surely milliseconds
// or before 1970.
func EpochSeconds(s string) (time.Time, error) {
	secs, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil:
		return time.Time{}, fmt.Errorf("%w: %q: %w", ErrBadTime, s, err)
	case secs < 0:
		return time.Time{}, fmt.Errorf("%w: %s is before 1970", ErrBadTime, s)
	case secs >= maxEpochSeconds:
		return time.Time{}, fmt.Errorf("%w: %s looks like epoch milliseconds; send epoch seconds", ErrBadTime, s)
	}
	return epoch(s, secs), nil
}
