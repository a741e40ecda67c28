package importer

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Progress prints an import's progress line: what it has counted so far, how far it is (a
// fraction), and the time left at the pace so far. On a terminal the line is redrawn in place
// five times a second; elsewhere (a log, CI) a line is printed every five seconds.
type Progress struct {
	w     io.Writer
	tty   bool
	label string
	now   func() time.Time

	mu    sync.Mutex
	began time.Time
	shown time.Time
	drawn bool
}

// NewProgress reports to w (nil: nowhere) under label.
func NewProgress(w io.Writer, label string) *Progress {
	now := time.Now()
	return &Progress{w: w, tty: IsTerminal(w), label: label, now: time.Now, began: now, shown: now}
}

// IsTerminal tells whether w is a terminal, where a progress line is redrawn in place.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Show reports counts (such as "120 pull requests, 3 deployments") and the fraction done, in
// [0, 1]; a negative fraction is unknown. final prints the line whatever the time since the
// last one, and ends it.
func (p *Progress) Show(counts string, fraction float64, final bool) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	if !final && now.Sub(p.shown) < every {
		return
	}
	p.shown = now
	elapsed := now.Sub(p.began)
	line := fmt.Sprintf("%s: %s, elapsed %s", p.label, counts, elapsed.Round(time.Second))
	switch {
	case final:
	case fraction > 0 && fraction < 1:
		eta := time.Duration(float64(elapsed) * (1 - fraction) / fraction)
		line += fmt.Sprintf(", %.0f%% done, ETA %s", 100*fraction, eta.Round(time.Second))
	case fraction >= 0:
		line += fmt.Sprintf(", %.0f%% done", 100*min(fraction, 1))
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		p.drawn = !final
		if final {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, line)
}

// Say prints a line of its own (a rate limit being waited for), without spoiling the progress
// line being redrawn.
func (p *Progress) Say(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}
