// Package metrics is a small registry of counters, gauges and histograms written in the
// Prometheus text exposition format (version 0.0.4), for GET /metrics.
//
// It is hand-written rather than prometheus/client_golang because DevOpstic needs a dozen
// series and no more: a counter is one atomic add, a histogram one atomic add per bucket, and
// the whole thing stays readable and free of transitive dependencies.
//
// Every method is safe for concurrent use. A nil *Registry registers nothing and hands out nil
// metrics, and a nil metric ignores what it is told: code that is not measured (a replay, a
// test) passes nil instead of a registry.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// ContentType is the media type of what Registry.Write writes.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// DefaultBuckets are upper bounds in seconds suited to HTTP request durations.
var DefaultBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type kind string

const (
	kindCounter   kind = "counter"
	kindGauge     kind = "gauge"
	kindHistogram kind = "histogram"
)

// Registry holds metric families by name.
type Registry struct {
	mu       sync.Mutex
	families map[string]*family
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{families: map[string]*family{}}
}

// Counter registers a counter without labels, or returns the one registered under name.
func (r *Registry) Counter(name, help string) *Counter {
	if r == nil {
		return nil
	}
	return r.family(name, help, kindCounter, nil, nil).with(nil).(*Counter)
}

// CounterVec registers a counter with labels, or returns the one registered under name.
func (r *Registry) CounterVec(name, help string, labels ...string) *CounterVec {
	if r == nil {
		return nil
	}
	return &CounterVec{f: r.family(name, help, kindCounter, labels, nil)}
}

// Gauge registers a gauge without labels, or returns the one registered under name.
func (r *Registry) Gauge(name, help string) *Gauge {
	if r == nil {
		return nil
	}
	return r.family(name, help, kindGauge, nil, nil).with(nil).(*Gauge)
}

// Histogram registers a histogram without labels with the given bucket upper bounds (the +Inf
// bucket is implied), or returns the one registered under name.
func (r *Registry) Histogram(name, help string, buckets []float64) *Histogram {
	if r == nil {
		return nil
	}
	return r.family(name, help, kindHistogram, nil, buckets).with(nil).(*Histogram)
}

// HistogramVec registers a histogram with labels, or returns the one registered under name.
func (r *Registry) HistogramVec(name, help string, buckets []float64, labels ...string) *HistogramVec {
	if r == nil {
		return nil
	}
	return &HistogramVec{f: r.family(name, help, kindHistogram, labels, buckets)}
}

// family returns the family registered under name, creating it. Registering the same name
// again with another kind, labels or buckets is a programming error and panics.
func (r *Registry) family(name, help string, k kind, labels []string, buckets []float64) *family {
	if !validName(name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", name))
	}
	for _, l := range labels {
		if !validName(l) || l == "le" || strings.HasPrefix(l, "__") {
			panic(fmt.Sprintf("metrics: invalid label name %q for %s", l, name))
		}
	}
	if k == kindHistogram {
		buckets = slices.Clone(buckets)
		slices.Sort(buckets)
		buckets = slices.Compact(buckets)
		if n := len(buckets); n > 0 && math.IsInf(buckets[n-1], +1) {
			buckets = buckets[:n-1]
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.families[name]; ok {
		if f.kind != k || !slices.Equal(f.labels, labels) || !slices.Equal(f.buckets, buckets) {
			panic(fmt.Sprintf("metrics: %s registered twice, as different metrics", name))
		}
		return f
	}
	f := &family{name: name, help: help, kind: k, labels: slices.Clone(labels), buckets: buckets, series: map[string]series{}}
	r.families[name] = f
	return f
}

// Write writes every family in the text exposition format, sorted by name, its series sorted
// by label values. A family without series yet is written with its HELP and TYPE only, so
// that every name is visible from the start.
func (r *Registry) Write(w io.Writer) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	families := make([]*family, 0, len(r.families))
	for _, f := range r.families {
		families = append(families, f)
	}
	r.mu.Unlock()
	sort.Slice(families, func(i, j int) bool { return families[i].name < families[j].name })

	b := bufio.NewWriter(w)
	for _, f := range families {
		f.write(b)
	}
	return b.Flush()
}

// metric is one series (or, for a histogram, one group of series) of a family.
type metric interface {
	write(b *bufio.Writer, name, labels string)
}

type family struct {
	name, help string
	kind       kind
	labels     []string
	buckets    []float64

	mu     sync.RWMutex
	series map[string]series // by label values joined with labelSep
}

type series struct {
	values []string
	m      metric
}

const labelSep = "\xff"

// with returns the series of the given label values, creating it.
func (f *family) with(values []string) metric {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("metrics: %s takes %d label values (%s), not %d", f.name, len(f.labels), strings.Join(f.labels, ", "), len(values)))
	}
	key := strings.Join(values, labelSep)
	f.mu.RLock()
	s, ok := f.series[key]
	f.mu.RUnlock()
	if ok {
		return s.m
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.series[key]; ok {
		return s.m
	}
	var m metric
	switch f.kind {
	case kindCounter:
		m = &Counter{}
	case kindGauge:
		m = &Gauge{}
	case kindHistogram:
		m = &Histogram{bounds: f.buckets, counts: make([]atomic.Uint64, len(f.buckets)+1)}
	}
	f.series[key] = series{values: slices.Clone(values), m: m}
	return m
}

func (f *family) write(b *bufio.Writer) {
	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, f.kind)
	f.mu.RLock()
	keys := make([]string, 0, len(f.series))
	for k := range f.series {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	all := make([]series, len(keys))
	for i, k := range keys {
		all[i] = f.series[k]
	}
	f.mu.RUnlock()
	for _, s := range all {
		s.m.write(b, f.name, formatLabels(f.labels, s.values))
	}
}

// Counter only goes up.
type Counter struct {
	v atomic.Uint64
}

// Inc adds one.
func (c *Counter) Inc() { c.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) {
	if c == nil {
		return
	}
	c.v.Add(n)
}

// Value is the count so far.
func (c *Counter) Value() uint64 {
	if c == nil {
		return 0
	}
	return c.v.Load()
}

func (c *Counter) write(b *bufio.Writer, name, labels string) {
	fmt.Fprintf(b, "%s%s %d\n", name, braces(labels), c.v.Load())
}

// CounterVec is a counter with labels.
type CounterVec struct {
	f *family
}

// With returns the counter of the label values, given in the order the labels were registered.
func (v *CounterVec) With(values ...string) *Counter {
	if v == nil {
		return nil
	}
	return v.f.with(values).(*Counter)
}

// Gauge goes up and down.
type Gauge struct {
	bits atomic.Uint64
}

// Set sets the gauge to x.
func (g *Gauge) Set(x float64) {
	if g == nil {
		return
	}
	g.bits.Store(math.Float64bits(x))
}

// Value is the gauge's value.
func (g *Gauge) Value() float64 {
	if g == nil {
		return 0
	}
	return math.Float64frombits(g.bits.Load())
}

func (g *Gauge) write(b *bufio.Writer, name, labels string) {
	fmt.Fprintf(b, "%s%s %s\n", name, braces(labels), formatFloat(g.Value()))
}

// Histogram counts observations in buckets and sums them.
type Histogram struct {
	bounds  []float64
	counts  []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sumBits atomic.Uint64
}

// Observe records x.
func (h *Histogram) Observe(x float64) {
	if h == nil {
		return
	}
	h.counts[sort.SearchFloat64s(h.bounds, x)].Add(1) // the first bound >= x: le is inclusive
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+x)) {
			return
		}
	}
}

func (h *Histogram) write(b *bufio.Writer, name, labels string) {
	sep := ""
	if labels != "" {
		sep = ","
	}
	// _count is the sum of the buckets as read, so that it always equals the +Inf bucket.
	var cumulative uint64
	for i := range h.counts {
		cumulative += h.counts[i].Load()
		le := "+Inf"
		if i < len(h.bounds) {
			le = formatFloat(h.bounds[i])
		}
		fmt.Fprintf(b, "%s_bucket{%s%sle=\"%s\"} %d\n", name, labels, sep, le, cumulative)
	}
	fmt.Fprintf(b, "%s_sum%s %s\n", name, braces(labels), formatFloat(math.Float64frombits(h.sumBits.Load())))
	fmt.Fprintf(b, "%s_count%s %d\n", name, braces(labels), cumulative)
}

// HistogramVec is a histogram with labels.
type HistogramVec struct {
	f *family
}

// With returns the histogram of the label values, given in the order the labels were
// registered.
func (v *HistogramVec) With(values ...string) *Histogram {
	if v == nil {
		return nil
	}
	return v.f.with(values).(*Histogram)
}

func formatLabels(names, values []string) string {
	var sb strings.Builder
	for i, n := range names {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(n)
		sb.WriteString(`="`)
		sb.WriteString(labelEscaper.Replace(values[i]))
		sb.WriteByte('"')
	}
	return sb.String()
}

func braces(labels string) string {
	if labels == "" {
		return ""
	}
	return "{" + labels + "}"
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeHelp(s string) string { return helpEscaper.Replace(s) }

func formatFloat(x float64) string {
	switch {
	case math.IsInf(x, +1):
		return "+Inf"
	case math.IsInf(x, -1):
		return "-Inf"
	case math.IsNaN(x):
		return "NaN"
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

// validName reports whether s is a Prometheus metric or label name (colons aside, which are
// for recording rules).
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}
