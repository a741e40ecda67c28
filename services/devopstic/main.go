// Command devopstic is DevOpstic in one process: the ingest and the writer, with an embedded
// NATS JetStream server unless DEVOPSTIC_NATS_URL names one. Its subcommands:
//
//	devopstic serve     run everything, configured from the environment (production-like)
//	devopstic dev       what `make run` starts: serve, plus a local Postgres under the data
//	                    directory, a generated JWT key and admin/admin unless told otherwise
//	devopstic migrate   bring the database schema up to date and exit
//	devopstic demo      load a generated history into a running DevOpstic
//	devopstic bench     the benchmark table of make bench (pkg/bench)
//
// and the operating commands status, replay, rebuild and dead-letters (admin.go), and the
// access commands user and apikey (access.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/metrics"
	"github.com/devopstic/devopstic/pkg/service"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
)

const usage = `usage: devopstic <command>

commands:
  serve     run the ingest and the writer (embedded NATS unless DEVOPSTIC_NATS_URL is set)
  dev       serve with a local Postgres and generated secrets: what "make run" starts
  migrate   bring the database schema up to date and exit
  demo      load a generated 90-day history into a running DevOpstic (make demo)
  bench     measure ingest, writer, latency and metrics API against their ceilings (make bench)

Configuration is read from DEVOPSTIC_* environment variables; see README.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "devopstic:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		args = []string{"serve"}
	}
	var cfg config.AllInOne
	if err := config.Parse(&cfg, nil); err != nil {
		return err
	}
	log := cfg.Log.Logger(os.Stderr)
	slog.SetDefault(log)

	switch args[0] {
	case "serve":
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("configuration:\n%w", err)
		}
		ln, err := net.Listen("tcp", cfg.HTTP.Addr)
		if err != nil {
			return fmt.Errorf("listen on DEVOPSTIC_HTTP_ADDR: %w", err)
		}
		return serve(ctx, cfg, ln, log)
	case "dev":
		return dev(ctx, cfg, stdout, log)
	case "demo":
		return demo(ctx, cfg, args[1:], stdout)
	case "bench":
		return benchmark(ctx, cfg, args[1:], stdout, os.Stderr)
	case "migrate":
		if err := store.Migrate(ctx, cfg.Database.ConnString()); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "database schema is up to date")
		return nil
	case "status", "replay", "rebuild", "dead-letters":
		return admin(ctx, cfg, args, stdout, os.Stderr, log)
	case "user", "apikey":
		return access(ctx, cfg, args, os.Stdin, stdout, os.Stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage+adminUsage+accessUsage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n\n%s", args[0], usage+adminUsage+accessUsage)
	}
}

// serve runs the ingest on ln and the writer until ctx is done, then shuts down in order:
// HTTP first (no new events), then the writer (finishes its batch), then NATS, then Postgres.
func serve(ctx context.Context, cfg config.AllInOne, ln net.Listener, log *slog.Logger) error {
	natsURL := cfg.NATS.URL
	if natsURL == "" {
		ns, err := startEmbeddedNATS(cfg.Embedded)
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		natsURL = ns.ClientURL()
		log.Info("embedded NATS JetStream started", "url", natsURL, "store", filepath.Join(cfg.Embedded.DataDir, "nats"), "sync", cfg.Embedded.SyncInterval)
	}
	nc, err := stream.Connect(natsURL, "devopstic", nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
		if err != nil {
			log.Warn("NATS disconnected", "error", err)
		}
	}), nats.ReconnectHandler(func(*nats.Conn) { log.Info("NATS reconnected") }))
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
		return service.Stopped(ctx, err) // a SIGTERM while waiting for NATS is a clean stop
	}
	// One registry for both roles: GET /metrics shows the ingest's and the writer's series.
	reg := metrics.NewRegistry()
	app, err := service.Ingest(cfg.Ingest(), nc, js, st, reg, log)
	if err != nil {
		return err
	}

	// The writer stops after HTTP, so that events accepted during the HTTP shutdown are
	// still written before the process exits.
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	defer stopHTTP()
	writerCtx, stopWriter := context.WithCancel(context.Background())
	defer stopWriter()

	httpDone := make(chan error, 1)
	writerDone := make(chan error, 1)
	go func() { httpDone <- service.Serve(httpCtx, ln, app) }()
	go func() {
		writerDone <- service.Write(writerCtx, cfg.Writer, cfg.Database.ConnString(), js, st, reg, log)
	}()
	log.Info("devopstic serving", "addr", ln.Addr().String())

	var httpErr, writerErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		stopHTTP()
		httpErr = <-httpDone
		stopWriter()
		writerErr = <-writerDone
	case httpErr = <-httpDone:
		stopWriter()
		writerErr = <-writerDone
	case writerErr = <-writerDone:
		stopHTTP()
		httpErr = <-httpDone
	}
	// Send the writer's last acks before the connection closes; a lost ack only means a
	// harmless redelivery, so a failed flush is not an error.
	_ = nc.FlushTimeout(2 * time.Second)
	return errors.Join(httpErr, writerErr)
}

func startEmbeddedNATS(cfg config.Embedded) (*server.Server, error) {
	host, portText, err := net.SplitHostPort(cfg.NATSAddr)
	if err != nil {
		return nil, fmt.Errorf("DEVOPSTIC_EMBEDDED_NATS_ADDR must be host:port, not %q", cfg.NATSAddr)
	}
	port, err := net.LookupPort("tcp", portText)
	if err != nil {
		return nil, fmt.Errorf("DEVOPSTIC_EMBEDDED_NATS_ADDR: %w", err)
	}
	interval, always, err := cfg.Sync()
	if err != nil {
		return nil, err
	}
	ns, err := stream.RunServer(stream.ServerConfig{
		StoreDir:     filepath.Join(cfg.DataDir, "nats"),
		Host:         host,
		Port:         port,
		SyncInterval: interval,
		SyncAlways:   always,
	})
	if err != nil {
		return nil, fmt.Errorf("%w (is another NATS server using %s? set DEVOPSTIC_EMBEDDED_NATS_ADDR)", err, cfg.NATSAddr)
	}
	return ns, nil
}
