package api

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/gofiber/fiber/v2"

	"github.com/devopstic/devopstic/pkg/dora"
	"github.com/devopstic/devopstic/pkg/store"
)

// getDORA answers DORA's five metrics for a pipeline, environment and window, rated
// against the benchmark asked for (the newest by default).
func (s *server) getDORA(c *fiber.Ctx) error {
	values, err := url.ParseQuery(string(c.Request().URI().QueryString()))
	if err != nil {
		return fail(c, fmt.Errorf("%w: query string: %w", errBadParameter, err))
	}
	q, err := dora.ParseQuery(values, s.deps.Now())
	if err != nil {
		return fail(c, err)
	}
	benchmark, err := s.benchmark(c, q.Benchmark)
	if err != nil {
		return fail(c, err)
	}
	m, err := s.deps.Store.Metrics(c.UserContext(), q.StoreQuery())
	if errors.Is(err, store.ErrNotFound) {
		return fail(c, fmt.Errorf("%w (parameter team; GET /api/v1/teams lists the teams)", err))
	}
	if err != nil {
		return fail(c, err)
	}
	report, err := dora.NewReport(q, m, benchmark)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(report)
}

// benchmark is the benchmark named (the default for ""), read from the database on every
// request: it is a small table, and a migration that adds a benchmark is then seen at once, by
// every version still running, without a restart.
func (s *server) benchmark(c *fiber.Ctx, name string) (dora.Benchmark, error) {
	list, err := s.deps.Store.Benchmarks(c.UserContext())
	if err != nil {
		return dora.Benchmark{}, err
	}
	benchmarks, err := dora.NewBenchmarks(list)
	if err != nil {
		return dora.Benchmark{}, err
	}
	return benchmarks.Get(name)
}

func (s *server) getTeams(c *fiber.Ctx) error {
	teams, err := s.deps.Store.Teams(c.UserContext())
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(listBody[store.Team]{Items: teams, Count: len(teams), Limit: len(teams)})
}

func (s *server) getPipelines(c *fiber.Ctx) error {
	pipelines, err := s.deps.Store.Pipelines(c.UserContext())
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(listBody[store.Pipeline]{Items: pipelines, Count: len(pipelines), Limit: len(pipelines)})
}
