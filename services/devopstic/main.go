// Command devopstic is DevOpstic in one process: the ingest and the writer, with an embedded
// NATS JetStream server unless DEVOPSTIC_NATS_URL names one. Its subcommands:
//
//	devopstic serve     run everything, configured from the environment (production-like)
//	devopstic dev       what `make run` starts: serve, plus a local Postgres under the data
//	                    directory, a generated JWT key and admin/admin unless told otherwise
//	devopstic migrate   bring the database schema up to date and, with DEVOPSTIC_NATS_URL, the
//	                    NATS stream and auth bucket (as the NATS admin), and exit
//	devopstic demo      load a generated history into a running DevOpstic
//
// and the operating commands status, replay, rebuild and dead-letters (admin.go), the access
// commands user and apikey (access.go), the import commands import git and import github
// (import.go), and the team commands (team.go).
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
	"github.com/devopstic/devopstic/pkg/service"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/writer"
)

const usage = `usage: devopstic <command>

commands:
  serve     run the ingest and the writer (embedded NATS unless DEVOPSTIC_NATS_URL is set)
  dev       serve with a local Postgres and generated secrets: what "make run" starts
  migrate   bring the database schema up to date, and the NATS stream with DEVOPSTIC_NATS_URL
  demo      load a generated 90-day history into a running DevOpstic (make demo)

Configuration is read from DEVOPSTIC_* environment variables; see docs/configuration.md.
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
	case "migrate":
		if err := store.Migrate(ctx, cfg.Database.ConnString()); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "database schema is up to date")
		if cfg.NATS.URL == "" {
			return nil // the all-in-one's embedded server is set up as it starts
		}
		if err := migrateNATS(ctx, cfg, log); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "NATS stream %s and key-value bucket %s are up to date\n", stream.StreamName, stream.AuthBucket)
		return nil
	case "status", "replay", "rebuild", "dead-letters":
		return admin(ctx, cfg, args, stdout, os.Stderr, log)
	case "user", "apikey":
		return access(ctx, cfg, args, os.Stdin, stdout, os.Stderr)
	case "import":
		return importHistory(ctx, cfg, args, stdout, os.Stderr)
	case "team":
		return team(ctx, cfg, args, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage+adminUsage+accessUsage+importUsage+teamUsage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n\n%s", args[0], usage+adminUsage+accessUsage+importUsage+teamUsage)
	}
}

// serve runs the ingest on ln and the writer until ctx is done, then shuts down in order:
// HTTP first (no new events), then the writer (finishes its batch), then NATS, then Postgres.
//
// The ingest and the writer each have their own NATS connection, as their role's user, so
// that the all-in-one works within the permissions the separate services have. The stream and
// the auth bucket are set up first as the admin when serve has the admin's password (its
// embedded server, or the data directory's password file); with DEVOPSTIC_NATS_USER it waits
// for `devopstic migrate` to have done it.
func serve(ctx context.Context, cfg config.AllInOne, ln net.Listener, log *slog.Logger) error {
	natsURL := cfg.NATS.URL
	var ingestLogin, writerLogin, adminLogin stream.Login
	if natsURL == "" {
		path, err := natsPasswordsPath(cfg.Embedded)
		if err != nil {
			return err
		}
		passwords, err := stream.LocalPasswords(path)
		if err != nil {
			return err
		}
		ns, err := startEmbeddedNATS(cfg.Embedded, passwords, int32(cfg.HTTP.BodyLimit+stream.HeaderRoom))
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		natsURL = ns.ClientURL()
		ingestLogin, writerLogin, adminLogin = passwords.As(stream.RoleIngest), passwords.As(stream.RoleWriter), passwords.As(stream.RoleAdmin)
		log.Info("embedded NATS JetStream started", "url", natsURL, "store", filepath.Join(cfg.Embedded.DataDir, "nats"), "sync", cfg.Embedded.SyncInterval, "passwords", path)
	} else {
		var fromFile bool
		var errs [3]error
		ingestLogin, fromFile, errs[0] = natsLogin(cfg, stream.RoleIngest)
		writerLogin, _, errs[1] = natsLogin(cfg, stream.RoleWriter)
		if fromFile {
			adminLogin, _, errs[2] = natsLogin(cfg, stream.RoleAdmin)
		}
		if err := errors.Join(errs[:]...); err != nil {
			return err
		}
	}
	if adminLogin.User != "" {
		if err := setUpNATS(ctx, natsURL, adminLogin, cfg.NATS, log); err != nil {
			return service.Stopped(ctx, err)
		}
	}
	connect := func(name string, login stream.Login) (*nats.Conn, error) {
		return stream.ConnectAs(natsURL, name, login, nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "connection", name, "error", err)
			}
		}), nats.ReconnectHandler(func(*nats.Conn) { log.Info("NATS reconnected", "connection", name) }))
	}
	ingestNC, err := connect("devopstic-ingest", ingestLogin)
	if err != nil {
		return err
	}
	defer ingestNC.Close()
	writerNC, err := connect("devopstic-writer", writerLogin)
	if err != nil {
		return err
	}
	defer writerNC.Close()

	st, err := store.Open(ctx, cfg.Database.ConnString(), cfg.Database.MaxConns)
	if err != nil {
		return err
	}
	defer st.Close()

	js, err := service.WaitForStream(ctx, ingestNC, ingestLogin, log)
	if err != nil {
		return service.Stopped(ctx, err) // a SIGTERM while waiting for NATS is a clean stop
	}
	writerJS, err := service.WaitForStream(ctx, writerNC, writerLogin, log)
	if err != nil {
		return service.Stopped(ctx, err)
	}
	// One registry for both roles: GET /metrics shows the ingest's and the writer's series.
	reg := service.NewRegistry()
	writerMetrics := writer.NewMetrics(reg)
	app, err := service.Ingest(cfg.Ingest(), ingestNC, js, st, reg, log)
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
		writerDone <- service.Write(writerCtx, cfg.Writer, cfg.Database.ConnString(), writerJS, st, writerMetrics, log)
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
	_ = writerNC.FlushTimeout(2 * time.Second)
	return errors.Join(httpErr, writerErr)
}

// startEmbeddedNATS starts the all-in-one's NATS server, taking messages of up to maxPayload
// bytes: the body limit plus room for headers, so that every body the ingest takes fits.
func startEmbeddedNATS(cfg config.Embedded, passwords stream.Passwords, maxPayload int32) (*server.Server, error) {
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
		MaxPayload:   maxPayload,
		Passwords:    passwords,
	})
	if err != nil {
		return nil, fmt.Errorf("%w (is another NATS server using %s? set DEVOPSTIC_EMBEDDED_NATS_ADDR)", err, cfg.NATSAddr)
	}
	return ns, nil
}
