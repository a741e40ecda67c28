package event

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrText: text that Postgres cannot keep. Go's JSON decoder accepts invalid UTF-8, the
// escape \u0000 and lone surrogates (it substitutes U+FFFD), but a text column refuses the
// first two and a jsonb column all three; a message holding them would be accepted with 202
// and then dead-lettered, so the edge refuses it instead.
var ErrText = errors.New("text Postgres cannot store")

// CheckText reports whether s can be kept in a text column: valid UTF-8 without NUL.
func CheckText(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: invalid UTF-8", ErrText)
	}
	for i := range len(s) {
		if s[i] == 0 {
			return fmt.Errorf("%w: a NUL character", ErrText)
		}
	}
	return nil
}

// CheckJSONText reports whether a JSON document that Go decodes can also be kept in a jsonb
// column: valid UTF-8, no \u0000, and \u escapes of surrogates only in pairs. It does not
// check the JSON syntax itself.
func CheckJSONText(doc []byte) error {
	if !utf8.Valid(doc) {
		return fmt.Errorf("%w: invalid UTF-8", ErrText)
	}
	// Outside strings valid JSON has no backslash, so escapes can be read pair by pair.
	for i := 0; i < len(doc); i++ {
		if doc[i] != '\\' || i+1 >= len(doc) {
			continue
		}
		if doc[i+1] != 'u' {
			i++ // \\, \", \n, ...: skip the escaped character
			continue
		}
		r, ok := hex4(doc, i+2)
		if !ok {
			i++
			continue // not JSON: the decoder says so
		}
		i += 5
		switch {
		case r == 0:
			return fmt.Errorf("%w: the escape \\u0000", ErrText)
		case utf16.IsSurrogate(r) && r < 0xdc00: // high: a low one must follow
			if i+6 < len(doc) && doc[i+1] == '\\' && doc[i+2] == 'u' {
				if low, ok := hex4(doc, i+3); ok && low >= 0xdc00 && low <= 0xdfff {
					i += 6
					continue
				}
			}
			return fmt.Errorf("%w: a lone surrogate \\u%04x", ErrText, r)
		case utf16.IsSurrogate(r):
			return fmt.Errorf("%w: a lone surrogate \\u%04x", ErrText, r)
		}
	}
	return nil
}

func hex4(doc []byte, at int) (rune, bool) {
	if at+4 > len(doc) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(doc[at:at+4]), 16, 16)
	return rune(v), err == nil
}

// CheckDelivery refuses a webhook delivery holding text Postgres could not store, in its body or
// in the pipeline or environment its URL names: it would be accepted, then dead-lettered.
func CheckDelivery(body []byte, pipelineID, environment string) error {
	if err := CheckJSONText(body); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	if err := CheckText(pipelineID); err != nil {
		return fmt.Errorf("pipeline_id: %w", err)
	}
	if err := CheckText(environment); err != nil {
		return fmt.Errorf("environment: %w", err)
	}
	return nil
}
