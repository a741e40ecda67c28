// Package api is DevOpstic's public HTTP API (the ingest): it authenticates, validates at the
// edge, publishes to the stream and answers 202 once the stream has the events; it also serves
// the read endpoints from Postgres.
//
// The write path needs NATS only: POST /events keeps answering while Postgres is down. Handlers
// stay short; errors are mapped to statuses in one place (fail).
package api

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/gofiber/fiber/v2/middleware/requestid"

	"github.com/devopstic/devopstic/pkg/alertmanager"
	"github.com/devopstic/devopstic/pkg/auth"
	"github.com/devopstic/devopstic/pkg/github"
	"github.com/devopstic/devopstic/pkg/gitlab"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
)

// Config shapes the API.
type Config struct {
	// BodyLimit is the largest request body accepted, in bytes.
	BodyLimit int
	// MaxBatch is the most events one request may carry.
	MaxBatch int
	// GitHubSecrets verify POST /github/events; none turns the endpoint off.
	GitHubSecrets []string
	// GitHub are the operator's GitHub mapping options (the URL adds its own per delivery).
	GitHub github.Options
	// GitLabSecrets verify POST /gitlab/events (X-Gitlab-Token); none turns the endpoint off.
	GitLabSecrets []string
	// GitLab are the operator's GitLab mapping options.
	GitLab gitlab.Options
	// PagerDutySecrets verify POST /pagerduty/incidents; none turns the endpoint off.
	PagerDutySecrets []string
	// AlertmanagerTokens authenticate POST /alertmanager/alerts; none turns the endpoint off.
	AlertmanagerTokens []string
	// Alertmanager are the operator's Alertmanager mapping options.
	Alertmanager alertmanager.Options
}

// Deps are what the API talks to.
type Deps struct {
	Publisher *stream.Publisher
	Store     *store.Store
	Tokens    *auth.Tokens
	Login     auth.Login
	// Ready reports whether the stream can take events (GET /readyz).
	Ready func(context.Context) error
	Log   *slog.Logger
	// Now stamps received_at; time.Now when nil.
	Now func() time.Time
}

type server struct {
	cfg  Config
	deps Deps
}

// New builds the fiber app with every route.
func New(cfg Config, deps Deps) *fiber.App {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &server{cfg: cfg, deps: deps}
	app := fiber.New(fiber.Config{
		AppName:               "devopstic",
		BodyLimit:             cfg.BodyLimit,
		DisableStartupMessage: true,
		ErrorHandler:          s.errorHandler,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           120 * time.Second,
	})
	app.Use(recover.New(), requestid.New(), s.logRequests)

	app.Get("/health", s.health)
	app.Get("/healthz", s.health)
	app.Get("/readyz", s.ready)
	app.Post("/tokens", s.postTokens)

	// Per route rather than a group: a group's middleware would also answer 401 to unknown paths.
	app.Get("/refresh_token", s.requireToken, s.refreshToken)
	app.Post("/events", s.requireToken, s.postEvents)
	app.Get("/events", s.requireToken, s.getEvents)
	app.Get("/commits", s.requireToken, s.getCommits)
	app.Post("/github/events", s.postGitHub)
	app.Post("/gitlab/events", s.postGitLab)
	app.Post("/pagerduty/incidents", s.postPagerDuty)
	app.Post("/alertmanager/alerts", s.postAlertmanager)
	app.Get("/api/v1/metrics/dora", s.requireToken, s.getDORA)
	app.Get("/api/v1/pipelines", s.requireToken, s.getPipelines)
	return app
}

func (s *server) health(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok"})
}

func (s *server) ready(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	if err := s.deps.Ready(ctx); err != nil {
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "unavailable", "error": err.Error()})
	}
	return c.JSON(fiber.Map{"status": "ready"})
}

// logRequests logs failures at info and everything else at debug, with the request id.
func (s *server) logRequests(c *fiber.Ctx) error {
	start := time.Now()
	err := c.Next()
	if err != nil {
		// Let the error handler set the status before it is logged.
		if herr := s.errorHandler(c, err); herr != nil {
			return herr
		}
	}
	status := c.Response().StatusCode()
	level := slog.LevelDebug
	if status >= 400 {
		level = slog.LevelInfo
	}
	if status >= 500 {
		level = slog.LevelWarn
	}
	s.deps.Log.Log(c.UserContext(), level, "request",
		"method", c.Method(), "path", c.Path(), "status", status,
		"duration", time.Since(start), "request_id", c.GetRespHeader(fiber.HeaderXRequestID), "ip", c.IP())
	return nil
}

// errorHandler answers errors that escape a handler (a fiber.Error such as 404, 405 or 413)
// in the API's error shape.
func (s *server) errorHandler(c *fiber.Ctx, err error) error {
	var ferr *fiber.Error
	if errors.As(err, &ferr) {
		msg := ferr.Message
		if ferr.Code == fiber.StatusRequestEntityTooLarge {
			msg = "request body is larger than the limit (DEVOPSTIC_BODY_LIMIT)"
		}
		return c.Status(ferr.Code).JSON(errorBody{Error: msg})
	}
	return fail(c, err)
}
