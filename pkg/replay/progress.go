package replay

import (
	"fmt"
	"io"
	"time"
)

// progress prints how far a long job is: redrawn in place a few times a second on a terminal,
// a line every few seconds otherwise (a log file or CI keeps every line).
type progress struct {
	w     io.Writer
	tty   bool
	label string
	began time.Time
	shown time.Time
}

func newProgress(w io.Writer, tty bool, label string) *progress {
	now := time.Now()
	return &progress{w: w, tty: tty, label: label, began: now, shown: now}
}

// show reports position of total done, and applied events since the start for the rate. final
// prints whatever the time since the last line.
func (p *progress) show(position, total uint64, applied int64, final bool) {
	if p == nil || p.w == nil {
		return
	}
	now := time.Now()
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	if !final && now.Sub(p.shown) < every {
		return
	}
	p.shown = now
	elapsed := now.Sub(p.began)
	rate := float64(applied) / max(elapsed.Seconds(), 1e-3)
	frac := 1.0
	if total > 0 {
		frac = min(float64(position)/float64(total), 1)
	}
	eta := "-"
	if frac > 0 && frac < 1 {
		eta = (time.Duration(float64(elapsed) * (1 - frac) / frac)).Round(time.Second).String()
	}
	line := fmt.Sprintf("%s: %d of %d (%.1f%%), %d events, %.0f events/s, elapsed %s, ETA %s",
		p.label, position, total, 100*frac, applied, rate, elapsed.Round(time.Second), eta)
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		if final {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, line)
}
