package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/devopstic/devopstic/pkg/bench"
	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/pgcluster"
	"github.com/devopstic/devopstic/pkg/stream"
)

// benchmark is `make bench`: it starts a throwaway Postgres and NATS JetStream server of its
// own, runs the ingest and writer binaries found beside this one against them (pkg/bench),
// prints the table to stdout and removes everything it made.
func benchmark(ctx context.Context, cfg config.AllInOne, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	self, _ := os.Executable()
	scale := fs.Float64("scale", 1, "size factor: 1 is 10M events for the metrics API and a 1M backlog; 0.01 is quick")
	ingestBin := fs.String("ingest", filepath.Join(filepath.Dir(self), "ingest"), "the ingest binary")
	writerBin := fs.String("writer", filepath.Join(filepath.Dir(self), "writer"), "the writer binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *scale <= 0 {
		return fmt.Errorf("bench: -scale must be positive, not %g", *scale)
	}
	for _, bin := range []string{*ingestBin, *writerBin} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("bench: %w (build the services first: make build)", err)
		}
	}

	// Not os.TempDir's 0700 default: Postgres may run as the postgres user, who must enter it.
	dir, err := os.MkdirTemp("", "devopstic-bench-")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	binDir, err := pgcluster.FindBinDir(cfg.Embedded.PGBinDir)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "starting a throwaway PostgreSQL and NATS JetStream under", dir)
	// Postgres with its production settings (fsync on): the writer's figures are real commits.
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{BinDir: binDir, DataDir: filepath.Join(dir, "postgres"), Log: stderr})
	if err != nil {
		return fmt.Errorf("bench: start PostgreSQL: %w", err)
	}
	defer func() { err = errors.Join(err, cluster.Stop()) }()
	if err := cluster.CreateDatabase(ctx, "devopstic", ""); err != nil {
		return err
	}
	// NATS as make run has it: file store, default sync interval.
	ns, err := stream.RunServer(stream.ServerConfig{StoreDir: filepath.Join(dir, "nats"), Host: "127.0.0.1", Port: -1})
	if err != nil {
		return fmt.Errorf("bench: start NATS: %w", err)
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()

	rows, err := bench.Run(ctx, bench.Config{
		Scale:       *scale,
		IngestBin:   *ingestBin,
		WriterBin:   *writerBin,
		DatabaseURL: cluster.URL("devopstic"),
		NATSURL:     ns.ClientURL(),
		Progress:    stderr,
	})
	bench.Print(stdout, rows, *scale, runtime.NumCPU())
	return err
}
