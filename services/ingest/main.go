// Command ingest is DevOpstic's public HTTP API on its own: it validates events and publishes
// them to NATS JetStream, and serves the read endpoints from Postgres. Scale it horizontally;
// it keeps no state. Configuration: DEVOPSTIC_* environment variables (docs/configuration.md).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/service"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	var cfg config.Ingest
	if err := config.Parse(&cfg, nil); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := cfg.Log.Logger(os.Stderr)
	slog.SetDefault(log)

	login := service.Login(cfg.NATS, stream.RoleIngest)
	nc, err := stream.ConnectAs(cfg.NATS.URL, "devopstic-ingest", login)
	if err != nil {
		return err
	}
	defer nc.Close()
	st, err := store.Open(ctx, cfg.Database.ConnString(), cfg.Database.MaxConns)
	if err != nil {
		return err
	}
	defer st.Close()
	// The read endpoints need the schema, the write path does not: migrate in the background
	// so that the ingest serves POST /events even while Postgres is away.
	go func() {
		if err := service.Retry(ctx, log, "database migrations", func(ctx context.Context) error {
			return store.Migrate(ctx, cfg.Database.ConnString())
		}); err != nil && ctx.Err() == nil {
			log.Error("migrations", "error", err)
		}
	}()
	js, err := service.WaitForStream(ctx, nc, login, log)
	if err != nil {
		return service.Stopped(ctx, err) // a SIGTERM while waiting for NATS is a clean stop
	}
	app, err := service.Ingest(cfg, nc, js, st, service.NewRegistry(), log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("listen on DEVOPSTIC_HTTP_ADDR: %w", err)
	}
	log.Info("ingest serving", "addr", ln.Addr().String(), "nats", cfg.NATS.URL)
	err = service.Serve(ctx, ln, app)
	_ = nc.FlushTimeout(2 * time.Second)
	return err
}
