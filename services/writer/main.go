// Command writer consumes DevOpstic's event stream into Postgres, idempotently. Several writers
// may share the durable consumer. Configuration: DEVOPSTIC_* environment variables (README.md).
package main

import (
	"context"
	"fmt"
	"log/slog"
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

	nc, err := stream.Connect(cfg.NATS.URL, "devopstic-writer")
	if err != nil {
		return err
	}
	defer nc.Close()
	st, err := store.Open(ctx, cfg.Database.ConnString(), cfg.Database.MaxConns)
	if err != nil {
		return err
	}
	defer st.Close()
	js, err := service.EnsureStream(ctx, nc, cfg.NATS, log)
	if err != nil {
		return err
	}
	err = service.Write(ctx, cfg.Writer, cfg.Database.ConnString(), js, st, log)
	_ = nc.FlushTimeout(2 * time.Second)
	return err
}
