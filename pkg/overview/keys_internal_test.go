package overview

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                                 "0s",
		45 * time.Second:                  "45s",
		12*time.Minute + 5*time.Second:    "12m 5s",
		5*time.Hour + 20*time.Minute:      "5h 20m",
		5*time.Hour + 20*time.Second:      "5h",
		3*24*time.Hour + 4*time.Hour + 59: "3d 4h",
		-90 * time.Second:                 "-1m 30s",
	} {
		require.Equal(t, want, Duration(d), "%s", d)
	}
}

// A week without a value is a gap in the line, not a zero; a lone value is a dot; the largest
// value is at the top of the box and zero at the bottom.
func TestDrawCutsTheLineAtMissingWeeks(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	tr := draw([]*float64{f(0), f(10), nil, f(5), nil, f(10), f(5)})
	require.Equal(t, []string{"3.0,29.0 22.0,3.0", "98.0,3.0 117.0,16.0"}, tr.Lines)
	require.Equal(t, []Point{{X: 60, Y: 16}}, tr.Dots)

	require.Empty(t, draw([]*float64{nil, nil}).Lines, "no values, nothing drawn")
	flat := draw([]*float64{f(0), f(0)})
	require.Equal(t, []string{"3.0,29.0 117.0,29.0"}, flat.Lines, "all zero: along the bottom")
}

// The policy's hash is of the stylesheet exactly as the page carries it: a browser refuses a
// stylesheet whose hash the policy does not list.
func TestStylesheetMatchesThePolicysHash(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	require.NoError(t, RenderLogin(&b, Login{CSRF: "t"}))
	page := b.String()
	start, end := strings.Index(page, "<style>")+len("<style>"), strings.Index(page, "</style>")
	sum := sha256.Sum256([]byte(page[start:end]))
	require.Contains(t, ContentSecurityPolicy, "style-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	require.NotContains(t, ContentSecurityPolicy, "unsafe")
	require.NotContains(t, page, "<script")
}
