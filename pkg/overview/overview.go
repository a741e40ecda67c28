// Package overview is DevOpstic's first page (GET /): the organisation, each team and each
// pipeline with its DORA keys and tiers over the last 30 and 90 days, a small trend of each key,
// and the incidents open now. It is read-only, rendered on the server with html/template, with
// no script and nothing loaded from elsewhere; anything more belongs in Grafana.
//
// Its figures are the metrics API's: the same store query (pkg/store Metrics) rated and shaped
// by the same code (pkg/dora NewReport), so the page and GET /api/v1/metrics/dora cannot
// disagree. A team's figures are those of the union of its pipelines.
package overview

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/devopstic/devopstic/pkg/dora"
	"github.com/devopstic/devopstic/pkg/store"
)

// Windows are the page's two windows, in days, each ending now.
var Windows = []int{30, 90}

// TrendWindow is the window of the trends: the longer one, by ISO week.
const TrendWindow = 90

// Defaults of the page.
const (
	// PageSize is how many pipelines one page shows; the rest are on the next pages.
	PageSize = 30
	// MaxOpenIncidents bounds the list of open incidents.
	MaxOpenIncidents = 50
	// parallel bounds the metrics queries one page runs at once, so that a page leaves the
	// pool's other connections to the writer and the API.
	parallel = 4
)

// Request is what a page is asked for.
type Request struct {
	Environment string
	// Page is the page of pipelines, from 1.
	Page int
	Now  time.Time
	// GrafanaURL, when set, links each row to its dashboard.
	GrafanaURL string
}

// View is everything the page shows.
type View struct {
	Environment string
	Now         time.Time
	// Benchmark is what the tiers are rated against: the default (newest), as the API's.
	Benchmark dora.Benchmark
	Windows   []Window
	// Organisation is every pipeline together.
	Organisation Row
	Teams        []Row
	Pipelines    []Row
	// Page of Pages of the pipelines (PageSize each), and how many there are.
	Page, Pages, PipelineCount int
	OpenIncidents              []Incident
	// MoreOpenIncidents: the list stops at MaxOpenIncidents; Organisation has the count.
	MoreOpenIncidents bool
	GrafanaURL        string
}

// Window is one of the page's windows, [From, To).
type Window struct {
	Days     int
	From, To time.Time
}

// Row is the organisation, a team or a pipeline.
type Row struct {
	Kind string // organisation, team or pipeline
	Name string
	// Team is a pipeline's team ("" when none); Pipelines are a team's.
	Team      string
	Pipelines []string
	// Reports are the metrics API's answers, one per window, in the order of Windows.
	Reports []dora.Report
	// Trends are one per key, over TrendWindow by week.
	Trends []Trend
	// Keys are what the page shows of Reports and Trends, one line per key.
	Keys []Key
	// APIURL is the metrics API's address for the row (the longest window); GrafanaURL its
	// dashboard, when Grafana is configured.
	APIURL, GrafanaURL string
}

// Incident is an open incident, as the page lists it.
type Incident struct {
	store.OpenIncident
	// Open is how long it has been open.
	Open time.Duration
}

// Build computes the page: the organisation, every team, one page of pipelines, and the open
// incidents. Every row's figures come from store.Metrics and dora.NewReport, as the API's.
func Build(ctx context.Context, st *store.Store, r Request) (View, error) {
	if r.Page < 1 {
		r.Page = 1
	}
	now := r.Now.UTC().Truncate(time.Second)
	v := View{Environment: r.Environment, Now: now, Page: r.Page, GrafanaURL: r.GrafanaURL}
	for _, days := range Windows {
		v.Windows = append(v.Windows, Window{Days: days, From: now.AddDate(0, 0, -days), To: now})
	}

	list, err := st.Benchmarks(ctx)
	if err != nil {
		return View{}, err
	}
	benchmarks, err := dora.NewBenchmarks(list)
	if err != nil {
		return View{}, err
	}
	v.Benchmark = benchmarks.Default()

	teams, err := st.Teams(ctx)
	if err != nil {
		return View{}, err
	}
	pipelines, err := st.Pipelines(ctx)
	if err != nil {
		return View{}, err
	}
	v.PipelineCount = len(pipelines)
	v.Pages = max(1, (len(pipelines)+PageSize-1)/PageSize)
	v.Page = min(v.Page, v.Pages)
	pipelines = pipelines[min(len(pipelines), (v.Page-1)*PageSize):min(len(pipelines), v.Page*PageSize)]

	v.Organisation = Row{Kind: "organisation", Name: "All pipelines"}
	v.Teams = make([]Row, len(teams))
	for i, t := range teams {
		v.Teams[i] = Row{Kind: "team", Name: t.Name, Pipelines: t.Pipelines}
	}
	v.Pipelines = make([]Row, len(pipelines))
	for i, p := range pipelines {
		v.Pipelines[i] = Row{Kind: "pipeline", Name: p.PipelineID}
		if p.Team != nil {
			v.Pipelines[i].Team = *p.Team
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	fill := func(row *Row) {
		g.Go(func() error { return v.fill(gctx, st, row) })
	}
	fill(&v.Organisation)
	for i := range v.Teams {
		fill(&v.Teams[i])
	}
	for i := range v.Pipelines {
		fill(&v.Pipelines[i])
	}
	g.Go(func() error {
		incidents, err := st.OpenIncidents(gctx, r.Environment, now, MaxOpenIncidents+1)
		if err != nil {
			return err
		}
		v.MoreOpenIncidents = len(incidents) > MaxOpenIncidents
		for _, in := range incidents[:min(len(incidents), MaxOpenIncidents)] {
			v.OpenIncidents = append(v.OpenIncidents, Incident{OpenIncident: in, Open: now.Sub(in.OpenedAt)})
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return View{}, err
	}
	return v, nil
}

// query is the metrics API's question for row over w, by interval.
func (v *View) query(row *Row, w Window, interval string) dora.Query {
	q := dora.Query{Environment: v.Environment, From: w.From, To: w.To, Interval: interval}
	switch row.Kind {
	case "team":
		q.Teams = []string{row.Name}
	case "pipeline":
		q.Pipelines = []string{row.Name}
	}
	return q
}

// fill computes row's reports and trends: one metrics query per window, the longest by week
// for the trends (its whole-window figures are the same as by "all": the buckets partition it).
func (v *View) fill(ctx context.Context, st *store.Store, row *Row) error {
	row.Reports = make([]dora.Report, len(v.Windows))
	for i, w := range v.Windows {
		interval := "all"
		if w.Days == TrendWindow {
			interval = "week"
		}
		q := v.query(row, w, interval)
		m, err := st.Metrics(ctx, q.StoreQuery())
		if err != nil {
			return fmt.Errorf("%s %q, %d days: %w", row.Kind, row.Name, w.Days, err)
		}
		if row.Reports[i], err = dora.NewReport(q, m, v.Benchmark); err != nil {
			return err
		}
		if interval == "week" {
			row.Trends = trends(m)
			row.APIURL = apiURL(v.query(row, w, "all"))
		}
	}
	row.Keys = keys(row.Reports, v.Windows, row.Trends)
	if v.GrafanaURL != "" {
		row.GrafanaURL = grafanaURL(v.GrafanaURL, row, v.Environment)
	}
	return nil
}

// apiURL is the metrics API's address for q.
func apiURL(q dora.Query) string {
	p := url.Values{}
	for _, id := range q.Pipelines {
		p.Add("pipeline_id", id)
	}
	for _, t := range q.Teams {
		p.Add("team", t)
	}
	p.Set("environment", q.Environment)
	p.Set("from", q.From.Format(time.RFC3339))
	p.Set("to", q.To.Format(time.RFC3339))
	// %20 rather than +: the same to a server, and kept as it is by html/template.
	return "/api/v1/metrics/dora?" + strings.ReplaceAll(p.Encode(), "+", "%20")
}

// grafanaURL is the row's DORA dashboard over the trend window.
func grafanaURL(base string, row *Row, env string) string {
	p := url.Values{}
	p.Set("var-environment", env)
	switch row.Kind {
	case "team":
		p.Set("var-team", row.Name)
	case "pipeline":
		p.Set("var-pipeline", row.Name)
	}
	p.Set("from", "now-"+strconv.Itoa(TrendWindow)+"d")
	p.Set("to", "now")
	return strings.TrimRight(base, "/") + "/d/devopstic-dora-overview/?" + strings.ReplaceAll(p.Encode(), "+", "%20")
}
