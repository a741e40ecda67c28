package api

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/gofiber/fiber/v2"

	"github.com/devopstic/devopstic/pkg/dora"
	"github.com/devopstic/devopstic/pkg/store"
)

// getDORA answers the four keys and rework rate for a pipeline, environment and window.
func (s *server) getDORA(c *fiber.Ctx) error {
	values, err := url.ParseQuery(string(c.Request().URI().QueryString()))
	if err != nil {
		return fail(c, fmt.Errorf("%w: query string: %w", errBadParameter, err))
	}
	q, err := dora.ParseQuery(values, s.deps.Now())
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
	report, err := dora.NewReport(q, m)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(report)
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
