package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/scenario"
	"github.com/devopstic/devopstic/pkg/store"
)

// teamCmd runs `devopstic team <args>` against the stack's database.
func (s *stack) teamCmd(args ...string) (string, error) {
	s.t.Helper()
	var out bytes.Buffer
	err := team(context.Background(), s.cfg, append([]string{"team"}, args...), &out)
	return out.String(), err
}

// loadGenerated posts a generated history and waits for the writer to have written it all.
func (s *stack) loadGenerated(sc scenario.Scenario, extra ...string) {
	s.t.Helper()
	events := sc.Events()
	for start := 0; start < len(events); start += 1000 {
		body, err := json.Marshal(events[start:min(start+1000, len(events))])
		require.NoError(s.t, err)
		s.postJSON(http.StatusAccepted, string(body))
	}
	for _, e := range extra {
		s.postJSON(http.StatusAccepted, e)
	}
	s.waitCount(len(events)+len(extra), `SELECT count(*) FROM events`)
	s.waitDrained()
	// Statistics, as autovacuum would gather them before long: without any, the planner takes
	// the DORA functions over a few pipelines for a handful of rows and runs them for a minute.
	_, err := s.db.Exec(context.Background(), `ANALYZE`)
	require.NoError(s.t, err)
}

// figures is a metrics answer without what says which selection it answers: the figures alone.
func (s *stack) figures(params url.Values) map[string]any {
	s.t.Helper()
	var m map[string]any
	require.NoError(s.t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?"+params.Encode())), &m))
	for _, k := range []string{"pipeline_id", "teams", "pipelines"} {
		delete(m, k)
	}
	return m
}

func deployments(m map[string]any) float64 {
	return m["deployment_frequency"].(map[string]any)["deployments"].(float64)
}

// Teams through the CLI and the API: a team's figures are those of its pipelines listed by
// pipeline_id (their union, not an average), a moved pipeline takes its history along, an
// unknown team is a 404.
func TestTeams(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	start := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	s.loadGenerated(scenario.Generate(scenario.Config{Seed: 11, Pipelines: 4, Start: start, Days: 60}))

	for _, args := range [][]string{
		{"create", "payments"}, {"create", "search"}, {"create", "empty"},
		{"add", "payments", "service-01"}, {"add", "payments", "service-02"}, {"add", "search", "service-03"},
		{"add", "search", "not-seen-yet"},
	} {
		_, err := s.teamCmd(args...)
		require.NoError(t, err, "team %v", args)
	}
	t.Run("the CLI refuses what it must", func(t *testing.T) {
		_, err := s.teamCmd("create", "payments")
		require.ErrorIs(t, err, store.ErrExists)
		_, err = s.teamCmd("create", " padded ")
		require.ErrorIs(t, err, store.ErrBadName)
		_, err = s.teamCmd("add", "nobody", "service-04")
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.teamCmd("add", "search", "service-01")
		require.ErrorIs(t, err, store.ErrOtherTeam, "a pipeline belongs to one team at most")
		_, err = s.teamCmd("remove", "search", "service-01")
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.teamCmd("frobnicate")
		require.ErrorContains(t, err, "usage: devopstic team")
		out, err := s.teamCmd("list")
		require.NoError(t, err)
		require.Regexp(t, `(?m)^payments\s+service-01,service-02$`, out)
		require.Regexp(t, `(?m)^search\s+not-seen-yet,service-03$`, out)
	})

	t.Run("GET /api/v1/teams and the pipelines' teams", func(t *testing.T) {
		var teams struct {
			Items []store.Team
			Count int
		}
		require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/teams")), &teams))
		require.Equal(t, 3, teams.Count)
		got := map[string][]string{}
		for _, tm := range teams.Items {
			got[tm.Name] = tm.Pipelines
			require.False(t, tm.CreatedAt.IsZero())
		}
		require.Equal(t, map[string][]string{"empty": {}, "payments": {"service-01", "service-02"}, "search": {"not-seen-yet", "service-03"}}, got)

		var pipelines struct{ Items []store.Pipeline }
		require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/pipelines")), &pipelines))
		teamOf := map[string]*string{}
		for _, p := range pipelines.Items {
			teamOf[p.PipelineID] = p.Team
		}
		require.Equal(t, "payments", *teamOf["service-02"])
		require.Nil(t, teamOf["service-04"])
	})

	window := func(extra url.Values) url.Values {
		v := url.Values{"from": {"2026-09-01"}, "to": {"2026-11-01"}}
		for k, vs := range extra {
			v[k] = vs
		}
		return v
	}
	t.Run("a team's figures are its pipelines' listed by pipeline_id", func(t *testing.T) {
		for _, c := range []struct {
			name        string
			teams, byID url.Values
		}{
			{"one team", url.Values{"team": {"payments"}}, url.Values{"pipeline_id": {"service-01", "service-02"}}},
			{"two teams", url.Values{"team": {"payments", "search"}}, url.Values{"pipeline_id": {"service-01", "service-02", "service-03"}}},
			{"a team and pipelines, one of them its own, counted once", url.Values{"team": {"payments"}, "pipeline_id": {"service-02", "service-04"}},
				url.Values{"pipeline_id": {"service-04", "service-01", "service-02"}}},
		} {
			for _, interval := range []string{"all", "week"} {
				teams, byID := window(c.teams), window(c.byID)
				teams.Set("interval", interval)
				byID.Set("interval", interval)
				require.Equal(t, s.figures(byID), s.figures(teams), "%s by %s", c.name, interval)
			}
		}
		// The union, not one pipeline's figures nor an average: counts add up.
		team := s.figures(window(url.Values{"team": {"payments"}}))
		one := s.figures(window(url.Values{"pipeline_id": {"service-01"}}))
		two := s.figures(window(url.Values{"pipeline_id": {"service-02"}}))
		require.Positive(t, deployments(one))
		require.Positive(t, deployments(two))
		require.Equal(t, deployments(one)+deployments(two), deployments(team))

		var r struct {
			PipelineID *string   `json:"pipeline_id"`
			Teams      []string  `json:"teams"`
			Pipelines  *[]string `json:"pipelines"`
		}
		require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?team=payments&pipeline_id=service-04")), &r))
		require.Nil(t, r.PipelineID)
		require.Equal(t, []string{"payments"}, r.Teams)
		require.Equal(t, []string{"service-01", "service-02", "service-04"}, *r.Pipelines)
	})

	t.Run("a team without pipelines has no figures, not everyone's", func(t *testing.T) {
		var r struct {
			Pipelines *[]string                   `json:"pipelines"`
			DF        struct{ Deployments int64 } `json:"deployment_frequency"`
		}
		require.NoError(t, json.Unmarshal([]byte(s.getJSON("/api/v1/metrics/dora?team=empty&from=2026-09-01&to=2026-11-01")), &r))
		require.NotNil(t, r.Pipelines)
		require.Empty(t, *r.Pipelines)
		require.Zero(t, r.DF.Deployments)
	})

	t.Run("an unknown team is a 404 that names it", func(t *testing.T) {
		status, body := s.do("GET", "/api/v1/metrics/dora?team=payments&team=nobody", "", nil)
		require.Equal(t, http.StatusNotFound, status, "%s", body)
		require.Contains(t, string(body), `no team \"nobody\"`)
		require.Contains(t, string(body), "parameter team")
	})

	t.Run("a pipeline moved to another team takes its whole history along", func(t *testing.T) {
		before := map[string]float64{}
		for _, p := range []string{"service-01", "service-02", "service-03"} {
			before[p] = deployments(s.figures(window(url.Values{"pipeline_id": {p}})))
		}
		searchBefore := deployments(s.figures(window(url.Values{"team": {"search"}})))
		require.Equal(t, before["service-03"], searchBefore)

		out, err := s.teamCmd("add", "search", "service-01", "--move")
		require.NoError(t, err)
		require.Contains(t, out, "moved pipeline service-01 from team payments to team search")

		require.Equal(t, before["service-01"]+before["service-03"], deployments(s.figures(window(url.Values{"team": {"search"}}))))
		require.Equal(t, before["service-02"], deployments(s.figures(window(url.Values{"team": {"payments"}}))))
		require.Equal(t, s.figures(window(url.Values{"pipeline_id": {"service-01", "service-03", "not-seen-yet"}})),
			s.figures(window(url.Values{"team": {"search"}})))
	})

	t.Run("a deleted team is gone, its pipelines' events stay", func(t *testing.T) {
		everyone := s.figures(window(nil))
		out, err := s.teamCmd("delete", "payments")
		require.NoError(t, err)
		require.Contains(t, out, "its 1 pipelines belong to no team")
		status, _ := s.do("GET", "/api/v1/metrics/dora?team=payments", "", nil)
		require.Equal(t, http.StatusNotFound, status)
		require.Equal(t, everyone, s.figures(window(nil)))
		_, err = s.teamCmd("delete", "payments")
		require.True(t, errors.Is(err, store.ErrNotFound), "%v", err)
	})
}
