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

// EnsureStream creates or updates the stream, waiting for NATS as long as ctx allows.
func EnsureStream(ctx context.Context, nc *nats.Conn, cfg config.NATS, log *slog.Logger) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	err = Retry(ctx, log, "NATS JetStream stream "+stream.StreamName, func(ctx context.Context) error {
		_, err := stream.EnsureStream(ctx, js, StreamConfig(cfg))
		return err
	})
	return js, err
}

// Ingest builds the HTTP API over nc and st.
func Ingest(cfg config.Ingest, nc *nats.Conn, js jetstream.JetStream, st *store.Store, log *slog.Logger) (*fiber.App, error) {
	pub, err := stream.NewPublisher(nc, cfg.NATS.PublishTimeout)
	if err != nil {
		return nil, err
	}
	ready := func(ctx context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("not connected to NATS (%s)", nc.Status())
		}
		if _, err := js.Stream(ctx, stream.StreamName); err != nil {
			return fmt.Errorf("stream %s: %w", stream.StreamName, err)
		}
		return nil
	}
	return api.New(
		api.Config{
			BodyLimit:     cfg.HTTP.BodyLimit,
			MaxBatch:      cfg.HTTP.MaxBatch,
			GitHubSecrets: cfg.GitHub.Secrets,
			GitHub: github.Options{
				DeployWorkflows:   cfg.GitHub.DeployWorkflows,
				DeployEnvironment: cfg.GitHub.DeployEnvironment,
				IncidentLabel:     cfg.GitHub.IncidentLabel,
			},
			GitLabSecrets:      cfg.GitLab.Secrets,
			GitLab:             gitlab.Options{IncidentLabel: cfg.GitLab.IncidentLabel},
			PagerDutySecrets:   cfg.PagerDuty.Secrets,
			AlertmanagerTokens: cfg.Alertmanager.Tokens,
			Alertmanager:       alertmanager.Options{Selector: cfg.Alertmanager.IncidentLabel},
		},
		api.Deps{
			Publisher: pub,
			Store:     st,
			Tokens:    auth.NewTokens(cfg.Auth.JWTSecret, cfg.Auth.TokenTTL),
			Login:     auth.Login{Username: cfg.Auth.Username, Password: cfg.Auth.Password},
			Ready:     ready,
			Log:       log,
		}), nil
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

// Write runs the writer until ctx is done: it waits for Postgres, runs the migrations, sets up
// the durable consumer and consumes.
func Write(ctx context.Context, cfg config.WriterTuning, dbURL string, js jetstream.JetStream, st *store.Store, log *slog.Logger) error {
	err := Retry(ctx, log, "database migrations", func(ctx context.Context) error { return store.Migrate(ctx, dbURL) })
	if err != nil {
		return stoppedOr(ctx, err)
	}
	var cons jetstream.Consumer
	err = Retry(ctx, log, "NATS consumer "+stream.ConsumerName, func(ctx context.Context) (err error) {
		cons, err = stream.EnsureConsumer(ctx, js, stream.ConsumerConfig{AckWait: cfg.AckWait, MaxAckPending: 20 * cfg.BatchSize})
		return err
	})
	if err != nil {
		return stoppedOr(ctx, err)
	}
	log.Info("writer consuming", "stream", stream.StreamName, "consumer", stream.ConsumerName, "batch_size", cfg.BatchSize, "batch_wait", cfg.BatchWait)
	w := writer.New(cons, st, writer.Config{
		BatchSize:  cfg.BatchSize,
		BatchWait:  cfg.BatchWait,
		MaxDeliver: cfg.MaxDeliver,
		RetryMax:   cfg.RetryMax,
	}, log)
	return w.Run(ctx)
}

// stoppedOr is nil when the wait ended because ctx was done (a shutdown is no failure), err
// otherwise.
func stoppedOr(ctx context.Context, err error) error {
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
