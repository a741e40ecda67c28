// Command bench is `make bench`: it starts a throwaway Postgres and NATS JetStream server of its
// own, runs the ingest and writer binaries found beside this one against them (pkg/bench),
// prints the table to stdout and removes everything it made.
//
// It is a command of its own, not a subcommand of devopstic, so that the load generator and its
// HTTP and JetStream clients stay out of the binaries the images ship (see main_test.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/devopstic/devopstic/pkg/bench"
	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/pgcluster"
	"github.com/devopstic/devopstic/pkg/stream"
)

// benchPostgres is how the benchmark's Postgres differs from a fresh cluster: as a server
// sized for 10 million events would be tuned. Durability stays on (fsync, synchronous_commit,
// full_page_writes): the writer's figures are real commits. A default 128 MB of shared buffers
// and 1 GB of WAL between checkpoints make every insert into a large index a page fetched from
// the OS and, after each checkpoint, a full page image written to the WAL.
var benchPostgres = map[string]string{
	"shared_buffers":     "'2GB'",
	"max_wal_size":       "'8GB'",
	"checkpoint_timeout": "'15min'",
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run parses the flags, starts the servers, runs the benchmark and prints its table, even when
// it stopped early: the rows measured so far are worth having.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	var cfg config.Embedded // DEVOPSTIC_PG_BINDIR, as make run reads it
	if err := config.Parse(&cfg, nil); err != nil {
		return err
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	self, _ := os.Executable()
	scale := fs.Float64("scale", 1, "size factor: 1 is 10M events for the metrics API and a 1M backlog; 0.01 is quick")
	ingestBin := fs.String("ingest", filepath.Join(filepath.Dir(self), "ingest"), "the ingest binary")
	writerBin := fs.String("writer", filepath.Join(filepath.Dir(self), "writer"), "the writer binary")
	baselineBin := fs.String("baseline", "", "the ingest binary of another version, to compare single-event POSTs with (make bench BENCH_BASELINE=<git ref>)")
	baselineLabel := fs.String("baseline-label", "", "what -baseline is, for the table (a git ref)")
	settings := maps.Clone(benchPostgres)
	fs.Func("pg", "a postgresql.conf setting `name=value` for the throwaway Postgres, over the defaults (repeatable)", func(v string) error {
		name, value, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return fmt.Errorf("want name=value, not %q", v)
		}
		settings[name] = value
		return nil
	})
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if *scale <= 0 {
		return fmt.Errorf("-scale must be positive, not %g", *scale)
	}
	bins := []string{*ingestBin, *writerBin}
	if *baselineBin != "" {
		bins = append(bins, *baselineBin)
	}
	for _, bin := range bins {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%w (build the services first: make build)", err)
		}
	}

	// Not os.TempDir's 0700 default: Postgres may run as the postgres user, who must enter it.
	dir, err := os.MkdirTemp("", "devopstic-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	binDir, err := pgcluster.FindBinDir(cfg.PGBinDir)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "starting a throwaway PostgreSQL and NATS JetStream under", dir)
	fmt.Fprintln(stderr, "PostgreSQL settings:", settings)
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{BinDir: binDir, DataDir: filepath.Join(dir, "postgres"), Log: stderr,
		Settings: settings})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer func() { err = errors.Join(err, cluster.Stop()) }()
	if err := cluster.CreateDatabase(ctx, "devopstic", ""); err != nil {
		return err
	}
	// NATS as make run has it: file store, default sync interval.
	passwords, err := stream.LocalPasswords(filepath.Join(dir, stream.PasswordsFile))
	if err != nil {
		return err
	}
	ns, err := stream.RunServer(stream.ServerConfig{StoreDir: filepath.Join(dir, "nats"), Host: "127.0.0.1", Port: -1, Passwords: passwords})
	if err != nil {
		return fmt.Errorf("start NATS: %w", err)
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()

	rows, err := bench.Run(ctx, bench.Config{
		Scale:             *scale,
		IngestBin:         *ingestBin,
		BaselineIngestBin: *baselineBin,
		BaselineLabel:     *baselineLabel,
		WriterBin:         *writerBin,
		DatabaseURL:       cluster.URL("devopstic"),
		NATSURL:           ns.ClientURL(),
		NATSPasswords:     passwords,
		Progress:          stderr,
	})
	bench.Print(stdout, rows, *scale, runtime.NumCPU())
	return err
}
