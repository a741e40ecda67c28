// Package api is DevOpstic's public HTTP API (the ingest): it authenticates, validates at the
// edge, publishes to the stream and answers 202 once the stream has the events; it also serves
// the read endpoints from Postgres.
//
// The write path needs NATS only: POST /events keeps answering while Postgres is down. Handlers
// stay short; errors are mapped to statuses in one place (fail).
package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/gofiber/fiber/v2/utils"
	"github.com/prometheus/client_golang/prometheus"

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
	// LoginLimits throttle failed logins (POST /tokens).
	LoginLimits auth.LimiterConfig
	// SeparateAdmin leaves /readyz and /metrics to the admin app (NewAdmin), served on an
	// address of its own.
	SeparateAdmin bool
	// ProxyHeader holds the client's address when the request comes from one of
	// TrustedProxies (addresses or CIDRs); otherwise the connection's address is the client's.
	ProxyHeader    string
	TrustedProxies []string
	// GrafanaURL, when set, is linked from the first page (GET /).
	GrafanaURL string
}

// Deps are what the API talks to.
type Deps struct {
	Publisher *stream.Publisher
	Store     *store.Store
	Tokens    *auth.Tokens
	Login     auth.Login
	// Keyring verifies API keys and token revocations from memory (the auth bucket's copy).
	Keyring *auth.Keyring
	// Ready reports whether the stream can take events (GET /readyz).
	Ready func(context.Context) error
	// Metrics receives the API's series and is what GET /metrics answers; nil measures nothing
	// and serves no /metrics.
	Metrics *prometheus.Registry
	Log     *slog.Logger
	// Now stamps received_at; time.Now when nil.
	Now func() time.Time
}

type server struct {
	cfg     Config
	deps    Deps
	limiter *auth.Limiter
	metrics apiMetrics
}

// New builds the fiber app with every route.
func New(cfg Config, deps Deps) *fiber.App {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &server{cfg: cfg, deps: deps, limiter: auth.NewLimiter(cfg.LoginLimits), metrics: newAPIMetrics(deps.Metrics)}
	app := fiber.New(fiber.Config{
		AppName: "devopstic",
		// Every string a handler reads from the request (headers, path parameters, the
		// client's address, query values) is a copy, not a view into fasthttp's buffer, which
		// the connection's next request overwrites: a string kept beyond its request (a cache
		// key, a throttle's key, a log line) can then never change under its holder. Copying
		// at each boundary instead would be cheaper by a few allocations a request and unsafe
		// the first time someone forgets one (see docs/security.md and make bench).
		Immutable: true,
		// Routes match their documented case only: a path the router accepted under another
		// spelling once escaped the credential redaction of the logs.
		CaseSensitive:           true,
		BodyLimit:               cfg.BodyLimit,
		DisableStartupMessage:   true,
		ErrorHandler:            s.errorHandler,
		ReadTimeout:             30 * time.Second,
		WriteTimeout:            30 * time.Second,
		IdleTimeout:             120 * time.Second,
		ProxyHeader:             cfg.ProxyHeader,
		EnableTrustedProxyCheck: true, // with no trusted proxy, ProxyHeader is never believed
		TrustedProxies:          cfg.TrustedProxies,
	})
	app.Use(recover.New(), requestID, secure, s.measure, s.logRequests, checkQuery)

	app.Get("/health", s.health)
	app.Get("/healthz", s.health)
	if !cfg.SeparateAdmin {
		app.Get("/readyz", s.ready)
		if deps.Metrics != nil {
			app.Get("/metrics", s.getMetrics)
		}
	}
	app.Post("/tokens", s.postTokens)

	// Per route rather than a group: a group's middleware would also answer 401 to unknown paths.
	app.Get("/refresh_token", s.authorize(""), s.refreshToken)
	app.Post("/events", s.authorize(auth.ScopeWrite), s.postEvents)
	app.Post("/webhook/:token/events", s.authorizePath(auth.ScopeWrite), s.postEvents)
	app.Post("/cdevents", s.authorize(auth.ScopeWrite), s.postCDEvents)
	app.Post("/webhook/:token/cdevents", s.authorizePath(auth.ScopeWrite), s.postCDEvents)
	app.Get("/events", s.authorizeRead, s.getEvents)
	app.Get("/commits", s.authorizeRead, s.getCommits)
	app.Post("/github/events", s.postGitHub)
	app.Post("/gitlab/events", s.postGitLab)
	app.Post("/pagerduty/incidents", s.postPagerDuty)
	app.Post("/alertmanager/alerts", s.postAlertmanager)
	app.Get("/api/v1/metrics/dora", s.authorizeRead, s.getDORA)
	app.Get("/api/v1/pipelines", s.authorizeRead, s.getPipelines)
	app.Get("/api/v1/teams", s.authorizeRead, s.getTeams)

	// The first page and its login (page.go).
	app.Get("/", s.authorizePage, s.getPage)
	app.Get("/login", s.getLogin)
	app.Post("/login", s.postLogin)
	app.Post("/logout", s.postLogout)
	return app
}

// NewAdmin builds the app of the admin address (Config.SeparateAdmin): liveness, readiness
// (when deps.Ready is set) and metrics (when deps.Metrics is), for probes and monitoring that
// should not share the public address. The writer serves it too, without readiness.
func NewAdmin(deps Deps) *fiber.App {
	s := &server{deps: deps}
	app := fiber.New(fiber.Config{AppName: "devopstic-admin", DisableStartupMessage: true, ErrorHandler: s.errorHandler,
		Immutable: true, CaseSensitive: true})
	app.Use(recover.New(), secure)
	app.Get("/healthz", s.health)
	if deps.Ready != nil {
		app.Get("/readyz", s.ready)
	}
	if deps.Metrics != nil {
		app.Get("/metrics", s.getMetrics)
	}
	return app
}

// securityHeaders are set on every answer, the errors that fasthttp answers before any
// middleware runs (413) included: helmet's defaults, tightened for an API that serves JSON
// only: nothing may be framed, loaded or cached from it.
var securityHeaders = [][2]string{
	{fiber.HeaderXContentTypeOptions, "nosniff"},
	{fiber.HeaderXFrameOptions, "DENY"},
	{fiber.HeaderContentSecurityPolicy, "default-src 'none'; frame-ancestors 'none'"},
	{fiber.HeaderXXSSProtection, "0"},
	{"Referrer-Policy", "no-referrer"},
	{"Cross-Origin-Embedder-Policy", "require-corp"},
	{"Cross-Origin-Opener-Policy", "same-origin"},
	{"Cross-Origin-Resource-Policy", "same-origin"},
	{"Origin-Agent-Cluster", "?1"},
	{"X-DNS-Prefetch-Control", "off"},
	{"X-Download-Options", "noopen"},
	{"X-Permitted-Cross-Domain-Policies", "none"},
}

func setSecurityHeaders(c *fiber.Ctx) {
	for _, h := range securityHeaders {
		c.Set(h[0], h[1])
	}
	if c.Protocol() == "https" {
		c.Set(fiber.HeaderStrictTransportSecurity, "max-age=31536000")
	}
}

func secure(c *fiber.Ctx) error {
	setSecurityHeaders(c)
	return c.Next()
}

// maxRequestID bounds a client's X-Request-ID, which every answer and log line repeats.
const maxRequestID = 128

// requestID gives every request an id, answered in X-Request-ID and logged: the client's own
// when it is short printable ASCII without spaces (a proxy's or a CI system's id, to follow
// one request across systems), a new one otherwise.
func requestID(c *fiber.Ctx) error {
	id := c.Get(fiber.HeaderXRequestID)
	if !validRequestID(id) {
		id = utils.UUIDv4()
	}
	c.Set(fiber.HeaderXRequestID, id)
	return c.Next()
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := range len(id) {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// checkQuery refuses a query parameter that is not UTF-8 text, or holds a NUL, with a 400
// that names it: no handler (nor Postgres, which refuses both) sees such a value.
func checkQuery(c *fiber.Ctx) error {
	var bad []byte
	c.Context().QueryArgs().VisitAll(func(key, value []byte) {
		if bad == nil && (!utf8.Valid(value) || bytes.IndexByte(value, 0) >= 0 || !utf8.Valid(key) || bytes.IndexByte(key, 0) >= 0) {
			bad = key
		}
	})
	if bad != nil {
		return fail(c, fmt.Errorf("%w: query parameter %q must be UTF-8 text without NUL characters", errBadParameter, bytes.ToValidUTF8(bad, []byte("?"))))
	}
	return c.Next()
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
	start, own := time.Now(), c.Route()
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
		"method", c.Method(), "path", loggedPath(c, own), "status", status,
		"duration", time.Since(start), "request_id", c.GetRespHeader(fiber.HeaderXRequestID), "ip", c.IP())
	return nil
}

// errorHandler answers errors that escape a handler (a fiber.Error such as 404, 405 or 413)
// in the API's error shape.
func (s *server) errorHandler(c *fiber.Ctx, err error) error {
	setSecurityHeaders(c) // the middleware has not run for the errors fasthttp answers itself
	var ferr *fiber.Error
	if errors.As(err, &ferr) {
		msg := ferr.Message
		if ferr.Code == fiber.StatusRequestEntityTooLarge {
			msg = fmt.Sprintf("request body is larger than the limit of %d bytes (DEVOPSTIC_BODY_LIMIT)", s.cfg.BodyLimit)
		}
		return c.Status(ferr.Code).JSON(errorBody{Error: msg})
	}
	return fail(c, err)
}

// loggedPath is what the logs say of a request's path: the pattern of the route that matched
// (/webhook/:token/events, never the credential in its place), or for a path no route matched
// its first segment only, and only when that is as short as a route's (a credential is not).
// Logging the pattern rather than redacting the path cannot miss a spelling of a route; own is
// the route of the middleware asking, which c.Route() still is when nothing matched.
func loggedPath(c *fiber.Ctx, own *fiber.Route) string {
	if r := c.Route(); r != own {
		return r.Path
	}
	first, rest, _ := strings.Cut(strings.TrimPrefix(c.Path(), "/"), "/")
	if len(first) > 16 {
		first = "…"
	}
	if rest != "" {
		return "/" + first + "/…"
	}
	return "/" + first
}
