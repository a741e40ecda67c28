package overview

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/dora"
	"github.com/devopstic/devopstic/pkg/store"
)

// Key is one line of a row's table: a DORA key over each window, and its trend.
type Key struct {
	Name string
	// Group is DORA's group of the key (throughput or instability), on the first key of each
	// group only: the page heads the group there.
	Group string
	Cells []Cell // one per window
	Trend Trend
}

// keyNames are the page's keys in DORA's order and grouping since 2024: throughput (deployment
// frequency, lead time for changes, failed deployment recovery time), then instability (change
// failure rate, rework rate). cell and trends follow the same order.
var keyNames = []struct{ name, group string }{
	{"Deployment frequency", "Throughput"},
	{"Lead time for changes", ""},
	{"Failed deployment recovery time", ""},
	{"Change failure rate", "Instability"},
	{"Rework rate", ""},
}

// Cell is a key over one window: its main figure, the counts behind it, and its tier.
type Cell struct {
	Window int
	Main   Figure
	Detail []Figure
	// Tier is nil for a key without tiers (rework rate).
	Tier *Figure
}

// Figure is one number of the metrics API's answer, as the page shows it.
type Figure struct {
	// Path is where the API's JSON has it: change_failure_rate.rate.
	Path string
	// Value is the number as the JSON has it ("" for null): the page's <data value>.
	Value string
	// Text is the number as people read it; Unit follows it in the detail line.
	Text, Unit string
}

// Trend is a key's values by week over TrendWindow, drawn as a line (inline SVG).
type Trend struct {
	Label string
	// Lines are SVG polyline points, one per run of weeks with a value; Dots the lone weeks.
	Lines []string
	Dots  []Point
	// Summary says the values in words, for the SVG's title (and screen readers).
	Summary string
}

// Point is a dot of a trend.
type Point struct{ X, Y float64 }

// The trend's drawing box, in SVG user units.
const (
	trendWidth  = 120
	trendHeight = 32
	trendPad    = 3
)

// keys shapes a row's reports (one per window) and trends into the lines of its table.
func keys(reports []dora.Report, windows []Window, trends []Trend) []Key {
	out := make([]Key, len(keyNames))
	for k, key := range keyNames {
		out[k] = Key{Name: key.name, Group: key.group}
		if k < len(trends) {
			out[k].Trend = trends[k]
		}
		for i, r := range reports {
			out[k].Cells = append(out[k].Cells, cell(k, r, windows[i].Days))
		}
	}
	return out
}

func cell(k int, r dora.Report, days int) Cell {
	c := Cell{Window: days}
	switch k {
	case 0:
		df := r.DeploymentFrequency
		c.Main = Figure{Path: "deployment_frequency.per_week", Value: float(df.PerWeek), Text: decimal(df.PerWeek) + " a week"}
		c.Detail = []Figure{
			{Path: "deployment_frequency.deployments", Value: integer(df.Deployments), Text: integer(df.Deployments), Unit: "deployments"},
			{Path: "deployment_frequency.per_day", Value: float(df.PerDay), Text: decimal(df.PerDay), Unit: "a day"},
		}
		c.Tier = tier("deployment_frequency.tier", &df.Tier)
	case 1:
		lt := r.LeadTime
		c.Main = Figure{Path: "lead_time_for_changes.median_seconds", Value: optInteger(lt.MedianSeconds), Text: duration(lt.MedianSeconds)}
		c.Detail = []Figure{{Path: "lead_time_for_changes.changes", Value: integer(lt.Changes), Text: integer(lt.Changes), Unit: "changes"}}
		c.Tier = tier("lead_time_for_changes.tier", lt.Tier)
	case 2:
		fr := r.FailedDeploymentRecoveryTime
		c.Main = Figure{Path: "failed_deployment_recovery_time.median_seconds", Value: optInteger(fr.MedianSeconds), Text: duration(fr.MedianSeconds)}
		c.Detail = []Figure{{Path: "failed_deployment_recovery_time.incidents", Value: integer(fr.Incidents), Text: integer(fr.Incidents), Unit: "restored"}}
		c.Tier = tier("failed_deployment_recovery_time.tier", fr.Tier)
	case 3:
		cfr := r.ChangeFailureRate
		c.Main = Figure{Path: "change_failure_rate.rate", Value: optFloat(cfr.Rate), Text: percent(cfr.Rate)}
		c.Detail = []Figure{
			{Path: "change_failure_rate.failed", Value: integer(cfr.Failed), Text: integer(cfr.Failed), Unit: "failed"},
			{Path: "change_failure_rate.deployments", Value: integer(cfr.Deployments), Text: integer(cfr.Deployments), Unit: "attempts"},
		}
		c.Tier = tier("change_failure_rate.tier", cfr.Tier)
	case 4:
		rr := r.ReworkRate
		c.Main = Figure{Path: "rework_rate.rate", Value: optFloat(rr.Rate), Text: percent(rr.Rate)}
		c.Detail = []Figure{{Path: "rework_rate.rework", Value: integer(rr.Rework), Text: integer(rr.Rework), Unit: "during an incident"}}
	}
	return c
}

func tier(path string, t *string) *Figure {
	if t == nil {
		return &Figure{Path: path, Text: "no data"}
	}
	return &Figure{Path: path, Value: *t, Text: *t}
}

// float is a rate or frequency as encoding/json writes it, so that the page's value and the
// API's parse to the same float64.
func float(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func optFloat(f *float64) string {
	if f == nil {
		return ""
	}
	return float(*f)
}

func integer(n int64) string { return strconv.FormatInt(n, 10) }

func optInteger(n *int64) string {
	if n == nil {
		return ""
	}
	return integer(*n)
}

// decimal is a frequency for people: two decimals at most, no trailing zeros.
func decimal(f float64) string {
	s := strconv.FormatFloat(f, 'f', 2, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

func percent(f *float64) string {
	if f == nil {
		return "—"
	}
	return decimal(*f*100) + "%"
}

// duration is a number of seconds for people, in its two largest units: 3d 4h, 5h 20m, 45s.
func duration(seconds *int64) string {
	if seconds == nil {
		return "—"
	}
	return Duration(time.Duration(*seconds) * time.Second)
}

// Duration writes d in its two largest units: 3d 4h, 5h 20m, 12m 5s, 45s.
func Duration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s < 0 {
		return "-" + Duration(-d)
	}
	units := []struct {
		name string
		size int64
	}{{"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}}
	for i, u := range units {
		if s >= u.size || u.size == 1 {
			out := fmt.Sprintf("%d%s", s/u.size, u.name)
			if i+1 < len(units) {
				if rest := (s % u.size) / units[i+1].size; rest > 0 {
					out += fmt.Sprintf(" %d%s", rest, units[i+1].name)
				}
			}
			return out
		}
	}
	return "0s"
}

// trends draws each key's weekly values from the store's buckets (every row after the first,
// the whole window's), in keyNames' order: successful deployments, median lead time, median
// failed deployment recovery time, change failure rate, rework rate.
func trends(m store.Metrics) []Trend {
	n := len(m.Deployments) - 1
	if n < 1 {
		return nil
	}
	series := []struct {
		label string
		at    func(i int) *float64
		text  func(f float64) string
	}{
		{"successful deployments a week", func(i int) *float64 { f := float64(m.Deployments[i].Deployments); return &f },
			func(f float64) string { return decimal(f) }},
		{"median lead time a week", func(i int) *float64 { return seconds(m.LeadTime[i].Median) },
			func(f float64) string { return Duration(time.Duration(f) * time.Second) }},
		{"median failed deployment recovery time a week", func(i int) *float64 { return seconds(m.Restore[i].Median) },
			func(f float64) string { return Duration(time.Duration(f) * time.Second) }},
		{"change failure rate a week", func(i int) *float64 { return m.Deployments[i].ChangeFailureRate },
			func(f float64) string { return percent(&f) }},
		{"rework rate a week", func(i int) *float64 { return m.Deployments[i].ReworkRate },
			func(f float64) string { return percent(&f) }},
	}
	out := make([]Trend, len(series))
	for k, s := range series {
		values := make([]*float64, n)
		words := make([]string, n)
		for i := range n {
			values[i] = s.at(i + 1)
			words[i] = "—"
			if values[i] != nil {
				words[i] = s.text(*values[i])
			}
		}
		out[k] = draw(values)
		out[k].Label = s.label
		out[k].Summary = s.label + ", oldest first: " + strings.Join(words, ", ")
	}
	return out
}

func seconds(n *int64) *float64 {
	if n == nil {
		return nil
	}
	f := float64(*n)
	return &f
}

// draw scales values into the trend's box (zero at the bottom, the largest at the top) and
// cuts the line where a value is missing: a week without a figure is a gap, not a zero.
func draw(values []*float64) Trend {
	top := 0.0
	for _, v := range values {
		if v != nil {
			top = math.Max(top, *v)
		}
	}
	if top == 0 {
		top = 1
	}
	step := float64(trendWidth-2*trendPad) / float64(max(1, len(values)-1))
	var t Trend
	var run []Point
	flush := func() {
		switch len(run) {
		case 0:
		case 1:
			t.Dots = append(t.Dots, run[0])
		default:
			parts := make([]string, len(run))
			for i, p := range run {
				parts[i] = strconv.FormatFloat(p.X, 'f', 1, 64) + "," + strconv.FormatFloat(p.Y, 'f', 1, 64)
			}
			t.Lines = append(t.Lines, strings.Join(parts, " "))
		}
		run = run[:0]
	}
	for i, v := range values {
		if v == nil {
			flush()
			continue
		}
		x := trendPad + float64(i)*step
		y := trendHeight - trendPad - (*v/top)*float64(trendHeight-2*trendPad)
		run = append(run, Point{X: math.Round(x*10) / 10, Y: math.Round(y*10) / 10})
	}
	flush()
	return t
}
