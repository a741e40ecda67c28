package event

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// What Postgres refuses although Go's JSON decoder accepts it. A message holding any of it would
// be accepted with 202 and then dead-lettered by the writer, so the edge refuses it instead.
var (
	// ErrText: text Postgres cannot keep. Go accepts invalid UTF-8, the escape \u0000 and lone
	// surrogates (it substitutes U+FFFD); a text column refuses the first two, jsonb all three.
	ErrText = errors.New("text Postgres cannot store")
	// ErrNumber: a JSON number outside the range of Postgres's numeric, which jsonb keeps
	// numbers in ("value overflows numeric format").
	ErrNumber = errors.New("a number Postgres cannot store")
	// ErrDepth: JSON nested deeper than MaxDepth.
	ErrDepth = errors.New("JSON nested too deep")
)

// Limits of Postgres's numeric type, which jsonb stores every JSON number as.
const (
	// numericMaxLead is the highest power of ten a numeric's leading digit may stand for:
	// 131,072 digits before the decimal point.
	numericMaxLead = 131071
	// numericMaxScale is the most digits a numeric keeps after the decimal point.
	numericMaxScale = 16383
	// maxExponentDigits bounds an exponent's significant digits (Postgres refuses 10 digits
	// even on a zero: 0e1073741823).
	maxExponentDigits = 9
)

// MaxDepth is how deeply JSON arrays and objects may nest. Postgres parses jsonb recursively,
// and its default max_stack_depth (2 MB) runs out between 12,000 and 15,000 levels; an operator
// may set it as low as 100 kB. No payload DevOpstic reads nests beyond a dozen levels.
const MaxDepth = 512

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

// CheckHeader reports whether a request header's value may travel on a stream message: the
// headers kept are copied into events.headers (jsonb), and a delivery id becomes events.id. It
// must be text Postgres can keep, without control characters (no NUL, no line break).
func CheckHeader(s string) error {
	if err := CheckText(s); err != nil {
		return err
	}
	for i := range len(s) {
		if s[i] < ' ' || s[i] == 0x7f {
			return fmt.Errorf("%w: a control character (byte %#02x)", ErrText, s[i])
		}
	}
	return nil
}

// CheckJSONText reports whether a JSON document that Go decodes can also be kept in a jsonb
// column: valid UTF-8; no \u0000 and no lone surrogate escape in its strings; numbers within
// numeric's range (at most 131,072 digits before the decimal point and 16,383 after, once the
// exponent is applied); nesting at most MaxDepth deep. It does not check the JSON syntax
// itself: run it on a document the decoder has accepted.
func CheckJSONText(doc []byte) error {
	if !utf8.Valid(doc) {
		return fmt.Errorf("%w: invalid UTF-8", ErrText)
	}
	depth := 0
	for i := 0; i < len(doc); i++ {
		switch c := doc[i]; {
		case c == '"':
			end, err := checkString(doc, i+1)
			if err != nil {
				return err
			}
			i = end
		case c == '[' || c == '{':
			if depth++; depth > MaxDepth {
				return fmt.Errorf("%w: arrays and objects may nest at most %d deep", ErrDepth, MaxDepth)
			}
		case c == ']' || c == '}':
			depth--
		case c == '-' || (c >= '0' && c <= '9'):
			end := i + 1
			for end < len(doc) && isNumberByte(doc[end]) {
				end++
			}
			if err := checkNumber(doc[i:end]); err != nil {
				return err
			}
			i = end - 1
		}
	}
	return nil
}

// checkString checks the string whose content starts at doc[from] and returns the index of its
// closing quote (len(doc) when there is none: not JSON, which the decoder reports).
func checkString(doc []byte, from int) (int, error) {
	for i := from; i < len(doc); i++ {
		switch doc[i] {
		case '"':
			return i, nil
		case '\\':
			if i+1 < len(doc) && doc[i+1] != 'u' {
				i++ // \\, \", \n, ...: skip the escaped character
				continue
			}
			r, ok := hex4(doc, i+2)
			if !ok {
				continue // not JSON: the decoder says so
			}
			i += 5
			switch {
			case r == 0:
				return 0, fmt.Errorf("%w: the escape \\u0000", ErrText)
			case utf16.IsSurrogate(r) && r < 0xdc00: // high: a low one must follow
				if i+6 < len(doc) && doc[i+1] == '\\' && doc[i+2] == 'u' {
					if low, ok := hex4(doc, i+3); ok && low >= 0xdc00 && low <= 0xdfff {
						i += 6
						continue
					}
				}
				return 0, fmt.Errorf("%w: a lone surrogate \\u%04x", ErrText, r)
			case utf16.IsSurrogate(r):
				return 0, fmt.Errorf("%w: a lone surrogate \\u%04x", ErrText, r)
			}
		}
	}
	return len(doc), nil
}

func isNumberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// checkNumber reports whether a JSON number fits Postgres's numeric, as numeric_in reads it:
// the scale is the mantissa's digits after the point minus the exponent; the leading nonzero
// digit must stand for at most 10^131071. A zero has no leading digit and only a scale.
func checkNumber(num []byte) error {
	s := num
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	intPart, s := s[:n], s[n:]
	var frac []byte
	if len(s) > 0 && s[0] == '.' {
		s = s[1:]
		n = 0
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		frac, s = s[:n], s[n:]
	}
	var exp int64
	if len(s) > 0 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		neg := len(s) > 0 && s[0] == '-'
		if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
			s = s[1:]
		}
		for len(s) > 1 && s[0] == '0' {
			s = s[1:]
		}
		if len(s) > maxExponentDigits {
			return fmt.Errorf("%w: %s has an exponent of more than %d digits", ErrNumber, abbreviate(num), maxExponentDigits)
		}
		exp, _ = strconv.ParseInt(string(s), 10, 64) // not a number: the decoder says so
		if neg {
			exp = -exp
		}
	}
	if scale := int64(len(frac)) - exp; scale > numericMaxScale {
		return fmt.Errorf("%w: %s has %d digits after the decimal point, at most %d are kept", ErrNumber, abbreviate(num), scale, numericMaxScale)
	}
	lead, nonzero := int64(0), false
	for i, c := range intPart {
		if c != '0' {
			lead, nonzero = int64(len(intPart)-1-i), true
			break
		}
	}
	if !nonzero {
		for i, c := range frac {
			if c != '0' {
				lead, nonzero = int64(-1-i), true
				break
			}
		}
	}
	if nonzero && lead+exp > numericMaxLead {
		return fmt.Errorf("%w: %s has %d digits before the decimal point, at most %d are kept", ErrNumber, abbreviate(num), lead+exp+1, numericMaxLead+1)
	}
	return nil
}

// abbreviate shows a number in an error message without repeating a megabyte of digits.
func abbreviate(num []byte) string {
	if len(num) <= 40 {
		return string(num)
	}
	return string(num[:20]) + "..." + string(num[len(num)-12:])
}

func hex4(doc []byte, at int) (rune, bool) {
	if at+4 > len(doc) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(doc[at:at+4]), 16, 16)
	return rune(v), err == nil
}

// CheckDelivery refuses a webhook delivery holding what Postgres could not store, in its body
// or in the pipeline or environment its URL names: it would be accepted, then dead-lettered.
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
