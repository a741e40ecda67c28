// Command writer consumes DevOpstic's event stream into Postgres, idempotently. Several writers
// may share the durable consumer. Configuration: DEVOPSTIC_* environment variables (docs/configuration.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/devopstic/devopstic/pkg/api"
	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/service"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/writer"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	var cfg config.Writer
	if err := config.Parse(&cfg, nil); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := cfg.Log.Logger(os.Stderr)
	slog.SetDefault(log)

	reg := service.NewRegistry()
	m := writer.NewMetrics(reg) // the series read 0, rather than being absent, while the writer waits for NATS
	adminCtx, stopAdmin := context.WithCancel(ctx)
	defer stopAdmin()
	adminDone := make(chan error, 1)
	if cfg.AdminAddr == "" {
		adminDone <- nil
	} else {
		// The writer's only HTTP: liveness and its metrics, up while it still waits for NATS.
		ln, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			return fmt.Errorf("listen on DEVOPSTIC_ADMIN_ADDR: %w", err)
		}
		go func() { adminDone <- service.Serve(adminCtx, ln, api.NewAdmin(api.Deps{Metrics: reg, Log: log})) }()
		log.Info("admin endpoints serving", "addr", ln.Addr().String())
	}
	login := service.Login(cfg.NATS, stream.RoleWriter)
	nc, err := stream.ConnectAs(cfg.NATS.URL, "devopstic-writer", login)
	if err != nil {
		return err
	}
	defer nc.Close()
	st, err := store.Open(ctx, cfg.Database.ConnString(), cfg.Database.MaxConns)
	if err != nil {
		return err
	}
	defer st.Close()
	js, err := service.WaitForStream(ctx, nc, login, log)
	if err != nil {
		return service.Stopped(ctx, err) // a SIGTERM while waiting for NATS is a clean stop
	}
	err = service.Write(ctx, cfg.Writer, cfg.Database.ConnString(), js, st, m, log)
	_ = nc.FlushTimeout(2 * time.Second)
	stopAdmin()
	return errors.Join(err, <-adminDone)
}
