package event

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrBadTime: a timestamp in none of the forms ParseTime reads.
var ErrBadTime = errors.New("unrecognised timestamp")

// timeLayouts are the forms webhook senders write times in: RFC 3339 and its common variants.
// Fractional seconds of any precision are accepted by every layout (Go parses them after the
// seconds even when the layout has none).
var timeLayouts = []string{
	time.RFC3339,                 // 2019-05-15T15:20:41Z, 2015-05-05T19:40:15-04:00
	"2006-01-02T15:04:05Z0700",   // +0200 without a colon
	"2006-01-02 15:04:05Z07:00",  // a space for the T
	"2006-01-02 15:04:05Z0700",   //
	"2006-01-02 15:04:05 Z07:00", // a space before the zone
	"2006-01-02 15:04:05 -0700",  // GitLab: 2019-03-15 08:45:01 +0200
	"2006-01-02 15:04:05 MST",    // GitLab: 2019-03-15 08:45:01 UTC
	"2006-01-02T15:04:05 MST",    //
	"2006-01-02T15:04:05",        // no zone: UTC
	"2006-01-02 15:04:05",        //
}

// ParseTime reads a webhook timestamp. A time without a zone is UTC; the result is in UTC.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range timeLayouts {
		t, err := time.Parse(layout, s)
		if err != nil {
			continue
		}
		// Go accepts any zone abbreviation and treats an unknown one as UTC with no offset;
		// only UTC and GMT are unambiguous, so refuse the others rather than guess.
		if strings.HasSuffix(layout, "MST") {
			if zone, _ := t.Zone(); zone != "UTC" && zone != "GMT" {
				continue
			}
		}
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%w: %q", ErrBadTime, s)
}
