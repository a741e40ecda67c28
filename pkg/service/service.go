// Package service runs DevOpstic's two roles, the ingest (HTTP API) and the writer, from
// connections a main has opened. The ingest and writer services run one role each; the
// all-in-one command runs both in one process. None of them knows how it is deployed.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/devopstic/devopstic/pkg/alertmanager"
	"github.com/devopstic/devopstic/pkg/api"
	"github.com/devopstic/devopstic/pkg/auth"
	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/github"
	"github.com/devopstic/devopstic/pkg/gitlab"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/writer"
)

// shutdownGrace bounds how long in-flight requests may take to finish on shutdown.
const shutdownGrace = 10 * time.Second

// StreamConfig is the stream shape the configuration asks for.
func StreamConfig(n config.NATS) stream.Config {
	return stream.Config{
		Replicas:   n.StreamReplicas,
		MaxAge:     n.StreamMaxAge,
		MaxBytes:   n.StreamMaxBytes,
		Duplicates: n.DuplicateWindow,
	}
}

// Login is the configured NATS login of role: DEVOPSTIC_NATS_USER and DEVOPSTIC_NATS_PASSWORD,
// with role's inbox prefix.
func Login(cfg config.NATS, role stream.Role) stream.Login {
	return stream.Login{Role: role, User: cfg.User, Password: cfg.Password}
}

// SetUp creates or updates the stream and the auth bucket (stream.Setup), waiting for NATS as
// long as ctx allows. nc must be the admin's: no other role may shape a stream.
func SetUp(ctx context.Context, nc *nats.Conn, login stream.Login, cfg config.NATS, log *slog.Logger) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("open JetStream: %w", err)
	}
	return Retry(ctx, log, "NATS JetStream to set up the stream "+stream.StreamName+" and the bucket "+stream.AuthBucket, func(ctx context.Context) error {
		if err := login.Refused(nc, nil); err != nil {
			return err
		}
		return withViolation(nc, stream.Setup(ctx, js, StreamConfig(cfg)))
	})
}

// WaitForStream waits, as long as ctx allows, until the stream exists. The ingest and the writer
// do not create it (they may not: see stream.Role.Permissions); stream.Setup does, run by the
// all-in-one for its embedded server or by `devopstic migrate` for an external NATS.
func WaitForStream(ctx context.Context, nc *nats.Conn, login stream.Login, log *slog.Logger) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	err = Retry(ctx, log, "NATS JetStream stream "+stream.StreamName, func(ctx context.Context) error {
		if err := login.Refused(nc, nil); err != nil {
			return err
		}
		_, err := js.Stream(ctx, stream.StreamName)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("%w: it is created by `devopstic migrate` run with the NATS admin's credentials (DEVOPSTIC_NATS_USER=%s), or by the all-in-one's embedded server", err, stream.RoleAdmin.User())
		}
		return withViolation(nc, err)
	})
	return js, err
}

// withViolation adds to err the permission NATS refused nc last, if any: a request it refuses
// gets no answer, so err alone would be a timeout.
func withViolation(nc *nats.Conn, err error) error {
	if last := nc.LastError(); err != nil && errors.Is(last, nats.ErrPermissionViolation) {
		return fmt.Errorf("%w (%w: is DEVOPSTIC_NATS_USER the user of this service's role?)", err, last)
	}
	return err
}

// Ingest builds the HTTP API over nc and st. It also starts what lives as long as the app
// does, until the app shuts down: the watch of the auth bucket (API keys and revocations, so
// that verifying them needs no Postgres) and, when DEVOPSTIC_ADMIN_ADDR is set, the admin
// address's listener. The API's series go to reg, which GET /metrics answers (on the admin
// address when there is one); nil measures nothing.
func Ingest(cfg config.Ingest, nc *nats.Conn, js jetstream.JetStream, st *store.Store, reg *prometheus.Registry, log *slog.Logger) (*fiber.App, error) {
	pub, err := stream.NewPublisher(nc, cfg.NATS.PublishTimeout)
	if err != nil {
		return nil, err
	}
	// Every body the API takes must fit a message of the stream, or it would be refused after
	// the client was told nothing was wrong with it.
	if err := pub.CheckBodyLimit(cfg.HTTP.BodyLimit); err != nil {
		return nil, fmt.Errorf("DEVOPSTIC_BODY_LIMIT is too large for NATS: %w", err)
	}
	keyring := auth.NewKeyring()
	ready := func(ctx context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("not connected to NATS (%s)", nc.Status())
		}
		if _, err := js.Stream(ctx, stream.StreamName); err != nil {
			return fmt.Errorf("stream %s: %w", stream.StreamName, err)
		}
		if !keyring.Loaded() {
			return fmt.Errorf("API keys not loaded yet from the key-value bucket %s", stream.AuthBucket)
		}
		return nil
	}
	deps := api.Deps{
		Publisher: pub,
		Store:     st,
		Tokens:    auth.NewTokens(cfg.Auth.JWTSecrets(), cfg.Auth.TokenTTL, cfg.Auth.RefreshWindow),
		Login:     auth.Login{Username: cfg.Auth.Username, Password: cfg.Auth.Password},
		Keyring:   keyring,
		Ready:     ready,
		Metrics:   reg,
		Log:       log,
	}
	var adminLn net.Listener
	if cfg.HTTP.AdminAddr != "" {
		if adminLn, err = net.Listen("tcp", cfg.HTTP.AdminAddr); err != nil {
			return nil, fmt.Errorf("listen on DEVOPSTIC_ADMIN_ADDR: %w", err)
		}
	}
	app := api.New(
		api.Config{
			BodyLimit:     cfg.HTTP.BodyLimit,
			MaxBatch:      cfg.HTTP.MaxBatch,
			GitHubSecrets: cfg.GitHub.Secrets,
			GitHub: github.Options{
				DeployWorkflows:   cfg.GitHub.DeployWorkflows,
				DeployEnvironment: cfg.GitHub.DeployEnvironment,
				IncidentLabel:     cfg.GitHub.IncidentLabel,
			},
			GitLabSecrets: cfg.GitLab.Secrets,
			GitLab: gitlab.Options{
				IncidentLabel:     cfg.GitLab.IncidentLabel,
				DeployPipelines:   cfg.GitLab.DeployPipelines,
				DeployEnvironment: cfg.GitLab.DeployEnvironment,
			},
			PagerDutySecrets:   cfg.PagerDuty.Secrets,
			AlertmanagerTokens: cfg.Alertmanager.Tokens,
			Alertmanager:       alertmanager.Options{Selector: cfg.Alertmanager.IncidentLabel},
			LoginLimits: auth.LimiterConfig{
				PerClient: cfg.Auth.LoginAttempts,
				PerUser:   cfg.Auth.LoginUserAttempts,
				Window:    cfg.Auth.LoginWindow,
			},
			SeparateAdmin:  adminLn != nil,
			ProxyHeader:    cfg.HTTP.ProxyHeader,
			TrustedProxies: cfg.HTTP.TrustedProxies,
			GrafanaURL:     cfg.HTTP.GrafanaURL,
		},
		deps)

	ctx, stop := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watchAuthBucket(ctx, nc, js, keyring, log)
	}()
	var admin *fiber.App
	if adminLn != nil {
		admin = api.NewAdmin(deps)
		go func() {
			if err := admin.Listener(adminLn); err != nil {
				log.Error("admin address stopped", "addr", cfg.HTTP.AdminAddr, "error", err)
			}
		}()
		log.Info("admin endpoints serving", "addr", adminLn.Addr().String())
	}
	app.Hooks().OnShutdown(func() error {
		stop()
		<-watched
		if admin != nil {
			return admin.ShutdownWithTimeout(shutdownGrace)
		}
		return nil
	})
	return app, nil
}

// watchAuthBucket keeps keyring equal to the auth bucket until ctx is done, waiting for the
// bucket while it is missing (stream.Setup creates it) and watching again whenever a watch ends
// (NATS restarted).
func watchAuthBucket(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, keyring *auth.Keyring, log *slog.Logger) {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		var kv jetstream.KeyValue
		err := Retry(ctx, log, "NATS key-value bucket "+stream.AuthBucket, func(ctx context.Context) (err error) {
			kv, err = js.KeyValue(ctx, stream.AuthBucket)
			if errors.Is(err, jetstream.ErrBucketNotFound) {
				return fmt.Errorf("%w: it is created with the stream, by `devopstic migrate` or the all-in-one's embedded server", err)
			}
			return withViolation(nc, err)
		})
		if err != nil {
			if ctx.Err() == nil {
				log.Error("API keys cannot be loaded", "error", err)
			}
			return
		}
		if err := keyring.Watch(ctx, kv, log); err != nil && (attempt == 1 || attempt%30 == 0) {
			log.Warn("watching the auth bucket again", "attempt", attempt, "error", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Serve serves app on ln until ctx is done, then lets in-flight requests finish.
func Serve(ctx context.Context, ln net.Listener, app *fiber.App) error {
	errc := make(chan error, 1)
	go func() { errc <- app.Listener(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve HTTP: %w", err)
	case <-ctx.Done():
		if err := app.ShutdownWithTimeout(shutdownGrace); err != nil {
			return fmt.Errorf("shut down HTTP: %w", err)
		}
		return nil
	}
}

// NewRegistry is the registry that GET /metrics answers, holding the Go runtime's series (go_*)
// and the process's (process_*: resident memory, open file descriptors, CPU). Each role adds
// its own: Ingest the API's, writer.NewMetrics the writer's.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Write runs the writer until ctx is done: it waits for Postgres, runs the migrations, sets up
// the durable consumer and consumes, counting in m (writer.NewMetrics; nil counts nothing).
// The stream's backlog and the writer's lag are read through js from the start, so that they
// show while Postgres keeps the writer waiting.
func Write(ctx context.Context, cfg config.WriterTuning, dbURL string, js jetstream.JetStream, st *store.Store, m *writer.Metrics, log *slog.Logger) error {
	m.Watch(js)
	err := Retry(ctx, log, "database migrations", func(ctx context.Context) error { return store.Migrate(ctx, dbURL) })
	if err != nil {
		return Stopped(ctx, err)
	}
	var cons jetstream.Consumer
	err = Retry(ctx, log, "NATS consumer "+stream.ConsumerName, func(ctx context.Context) (err error) {
		cons, err = stream.EnsureConsumer(ctx, js, stream.ConsumerConfig{AckWait: cfg.AckWait, MaxAckPending: 20 * cfg.BatchSize})
		return err
	})
	if err != nil {
		return Stopped(ctx, err)
	}
	log.Info("writer consuming", "stream", stream.StreamName, "consumer", stream.ConsumerName, "batch_size", cfg.BatchSize, "batch_wait", cfg.BatchWait)
	w := writer.New(cons, st, writer.Config{
		BatchSize:  cfg.BatchSize,
		BatchWait:  cfg.BatchWait,
		MaxDeliver: cfg.MaxDeliver,
		RetryMax:   cfg.RetryMax,
		Metrics:    m,
	}, log)
	return w.Run(ctx)
}

// Stopped is nil when a wait ended because ctx was done (a shutdown while starting is no
// failure), err otherwise.
func Stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Retry calls fn until it succeeds or ctx is done, saying what it waits for.
func Retry(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		attemptCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := fn(attemptCtx)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, stream.ErrCredentialsRefused) {
			return err // only a change of configuration helps
		}
		if attempt == 1 || attempt%10 == 0 {
			log.Warn("waiting for "+what, "attempt", attempt, "error", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up waiting for %s: %w", what, errors.Join(ctx.Err(), err))
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}
