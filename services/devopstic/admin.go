package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/replay"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/writer"
)

const adminUsage = `
operating commands (they read the same DEVOPSTIC_* variables; without DEVOPSTIC_NATS_URL they
reach the embedded server at DEVOPSTIC_EMBEDDED_NATS_ADDR, and without DEVOPSTIC_DATABASE_URL the
local Postgres of "make run" when there is one):
  status                          the stream, the writer's lag, dead letters, table row counts
  replay --from SEQ|TIME [--to SEQ|TIME] [--subjects S,...] [--restart]
                                  apply part of the stream again (resumes after Ctrl-C)
  rebuild [--from-stream [--force]]
                                  recompute every table from the events table (or the stream)
                                  into fresh tables and swap them in at once
  dead-letters list | show SEQ | retry SEQ|--all | discard SEQ|--all
`

// adminEnv is what the operating commands work with.
type adminEnv struct {
	cfg     config.AllInOne
	st      *store.Store
	js      jetstream.JetStream // nil for commands that need no NATS
	natsErr error               // status only: why js is nil
	stdout  io.Writer
	stderr  io.Writer
	log     *slog.Logger
}

// admin runs an operating command: args[0] is its name.
func admin(ctx context.Context, cfg config.AllInOne, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	env, closeEnv, err := openAdmin(ctx, cfg, args[0], stdout, stderr, log)
	if err != nil {
		return err
	}
	defer closeEnv()
	switch args[0] {
	case "status":
		return env.status(ctx, args[1:])
	case "replay":
		return env.replay(ctx, args[1:])
	case "rebuild":
		return env.rebuild(ctx, args[1:])
	default:
		return env.deadLetters(ctx, args[1:])
	}
}

// openAdmin connects to what command needs. status needs nothing to be up: it reports what it
// cannot reach (it is what an operator runs during an outage), so it neither migrates nor fails
// on an unreachable NATS.
func openAdmin(ctx context.Context, cfg config.AllInOne, command string, stdout, stderr io.Writer, log *slog.Logger) (*adminEnv, func(), error) {
	st, closeStore, err := openStore(ctx, cfg, command != "status", 4)
	if err != nil {
		return nil, nil, err
	}
	env := &adminEnv{cfg: cfg, st: st, stdout: stdout, stderr: stderr, log: log}
	if command == "dead-letters" {
		return env, closeStore, nil
	}
	nc, js, err := adminJetStream(cfg, "devopstic-admin")
	if err != nil && command == "status" {
		env.natsErr = err
		return env, closeStore, nil
	}
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	env.js = js
	return env, func() { nc.Close(); closeStore() }, nil
}

// openStore opens Postgres for an operator command: DEVOPSTIC_DATABASE_URL, or else the local
// cluster of "make run" when there is one (started if it is not running), migrated first when
// migrate is set. Its close also stops a cluster it started.
func openStore(ctx context.Context, cfg config.AllInOne, migrate bool, conns int32) (*store.Store, func(), error) {
	dbURL, stopCluster := cfg.Database.ConnString(), func() {}
	if cfg.Database.URL == "" {
		if dataDir, err := filepath.Abs(cfg.Embedded.DataDir); err == nil {
			if _, err := os.Stat(filepath.Join(dataDir, "postgres", "PG_VERSION")); err == nil {
				cfg.Embedded.DataDir = dataDir
				cluster, err := startLocalPostgres(ctx, cfg.Embedded, io.Discard)
				if err != nil {
					return nil, nil, err
				}
				stopCluster = func() { _ = cluster.StopIfStarted() }
				dbURL = cluster.URL("devopstic")
			}
		}
	}
	if migrate {
		if err := store.Migrate(ctx, dbURL); err != nil {
			stopCluster()
			return nil, nil, err
		}
	}
	st, err := store.Open(ctx, dbURL, conns)
	if err != nil {
		stopCluster()
		return nil, nil, err
	}
	return st, func() { st.Close(); stopCluster() }, nil
}

func (e *adminEnv) applier() writer.Applier {
	return writer.Applier{Store: e.st, RetryMax: e.cfg.Writer.RetryMax, Log: e.log}
}

func (e *adminEnv) progressOptions(batch int) replay.Options {
	opts := replay.Options{BatchSize: batch, Progress: e.stderr}
	if f, ok := e.stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			opts.Terminal = true
		}
	}
	return opts
}

func (e *adminEnv) replay(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	from := fs.String("from", "", "first message: a stream sequence (1 for all) or an RFC 3339 time (required)")
	to := fs.String("to", "", "last message: a stream sequence or an RFC 3339 time (default: the last one when the replay starts)")
	subjects := fs.String("subjects", "", "comma-separated subjects to replay, wildcards allowed (default: devopstic.events.>)")
	batch := fs.Int("batch", e.cfg.Writer.BatchSize, "messages per transaction")
	restart := fs.Bool("restart", false, "start over instead of resuming an interrupted replay of the same range")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" {
		return errors.New("replay needs --from: a stream sequence (1 replays everything the stream holds) or an RFC 3339 time")
	}
	var rng replay.Range
	var err error
	if rng.From, err = replay.ParseBound(*from); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if rng.To, err = replay.ParseBound(*to); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	for _, s := range strings.Split(*subjects, ",") {
		if s = strings.TrimSpace(s); s != "" {
			rng.Subjects = append(rng.Subjects, s)
		}
	}
	if *batch < 1 {
		return errors.New("--batch must be at least 1")
	}
	opts := e.progressOptions(*batch)
	opts.Checkpoint, opts.Restart = true, *restart
	ap := e.applier()
	sum, err := replay.Stream(ctx, e.js, &ap, rng, opts)
	if sum.Resumed {
		fmt.Fprintf(e.stdout, "resumed an interrupted replay of %s\n", sum.Name)
	}
	if sum.Gone > 0 {
		fmt.Fprintf(e.stdout, "warning: the first %d messages of the range are no longer in the stream (retention); "+
			"`devopstic rebuild` recomputes the tables from the events table, which still has them\n", sum.Gone)
	}
	if errors.Is(err, replay.ErrInterrupted) {
		fmt.Fprintf(e.stdout, "interrupted after %d messages (up to stream sequence %d of %d); run the same command again to resume\n",
			sum.Messages, sum.LastSeq, sum.EndSeq)
		return err
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "replayed stream sequences %d to %d: %d messages applied, %d dead-lettered, in %s (%.0f messages/s; of it, deriving %d commits, deployments and incidents %s)\n",
		sum.StartSeq, sum.EndSeq, sum.Messages-sum.DeadLettered, sum.DeadLettered, sum.Elapsed.Round(time.Millisecond),
		float64(sum.Messages)/max(sum.Elapsed.Seconds(), 1e-3), sum.Derived, sum.Deriving.Round(time.Millisecond))
	return nil
}

func (e *adminEnv) rebuild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rebuild", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fromStream := fs.Bool("from-stream", false, "read the whole stream instead of the events table")
	force := fs.Bool("force", false, "with --from-stream: go on even though the stream has lost events the table still has")
	batch := fs.Int("batch", e.cfg.Writer.BatchSize, "events per transaction")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var js jetstream.JetStream
	if *fromStream {
		js = e.js
	}
	sum, err := replay.Rebuild(ctx, e.st, js, *force, e.applier(), e.progressOptions(max(*batch, 1)))
	if err != nil {
		return err
	}
	source := "the events table"
	if sum.FromStream {
		source = "the stream"
	}
	fmt.Fprintf(e.stdout, "rebuilt from %s: %d events mapped, %d dead-lettered, %d written meanwhile caught up; derived in %s; the swap held the writers %s; total %s\n",
		source, sum.Read, sum.DeadLettered, sum.CaughtUp, sum.Deriving.Round(time.Millisecond), sum.Swap.Round(time.Millisecond), sum.Elapsed.Round(time.Millisecond))
	for _, t := range store.StreamTables {
		fmt.Fprintf(e.stdout, "  %-22s %10d rows (was %d)\n", t, sum.After[t], sum.Before[t])
	}
	return nil
}

func (e *adminEnv) deadLetters(ctx context.Context, args []string) error {
	const usage = "usage: devopstic dead-letters list | show SEQ | retry SEQ|--all | discard SEQ|--all"
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "list":
		dls, err := e.st.DeadLetters(ctx)
		if err != nil {
			return err
		}
		for _, dl := range dls {
			fmt.Fprintf(e.stdout, "%d\t%s\t%s\t%d deliveries\t%s\n", dl.StreamSeq, dl.FailedAt.UTC().Format(time.RFC3339), dl.Subject, dl.Deliveries, dl.Reason)
		}
		fmt.Fprintf(e.stdout, "%d dead letters\n", len(dls))
		return nil
	case "show":
		seq, err := seqArg(args)
		if err != nil {
			return err
		}
		dl, err := e.st.DeadLetter(ctx, seq)
		if err != nil {
			return err
		}
		out, err := json.MarshalIndent(map[string]any{
			"stream_seq": dl.StreamSeq, "subject": dl.Subject, "headers": dl.Headers, "reason": dl.Reason,
			"deliveries": dl.Deliveries, "failed_at": dl.FailedAt.UTC(), "data": string(dl.Data),
		}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, string(out))
		return nil
	case "retry":
		return e.retryDeadLetters(ctx, args)
	case "discard":
		var seqs []uint64
		if len(args) != 2 || args[1] != "--all" {
			seq, err := seqArg(args)
			if err != nil {
				return err
			}
			seqs = []uint64{seq}
		}
		n, err := e.st.DeleteDeadLetters(ctx, seqs)
		if err != nil {
			return err
		}
		if seqs != nil && n == 0 {
			return fmt.Errorf("%w: no dead letter for stream sequence %d", store.ErrNotFound, seqs[0])
		}
		fmt.Fprintf(e.stdout, "discarded %d dead letters (the messages stay in the stream: a replay would try them again)\n", n)
		return nil
	}
	return errors.New(usage)
}

// retryDeadLetters applies dead letters again (replay.RetryDeadLetters) and says which still fail.
func (e *adminEnv) retryDeadLetters(ctx context.Context, args []string) error {
	var seqs []uint64
	if len(args) != 2 || args[1] != "--all" {
		seq, err := seqArg(args)
		if err != nil {
			return err
		}
		seqs = []uint64{seq}
	}
	ap := e.applier()
	sum, err := replay.RetryDeadLetters(ctx, &ap, seqs, e.cfg.Writer.BatchSize)
	for _, dl := range sum.Failed {
		fmt.Fprintf(e.stdout, "%d still fails: %s\n", dl.StreamSeq, dl.Reason)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "retried %d dead letters: %d written and removed, %d still failing\n", sum.Tried, len(sum.Written), len(sum.Failed))
	if len(sum.Failed) > 0 {
		return fmt.Errorf("%d dead letters still fail", len(sum.Failed))
	}
	return nil
}

func seqArg(args []string) (uint64, error) {
	if len(args) != 2 {
		return 0, fmt.Errorf("dead-letters %s needs one stream sequence (see dead-letters list)", args[0])
	}
	seq, err := strconv.ParseUint(args[1], 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("%q is not a stream sequence", args[1])
	}
	return seq, nil
}

// Status is what `devopstic status --json` prints. Stream and Consumer are null when NATS
// (or the consumer) is not there; Errors says what could not be reached.
type Status struct {
	Stream      *stream.State    `json:"stream"`
	Consumer    *stream.Lag      `json:"consumer"`
	DeadLetters int64            `json:"dead_letters"`
	Rows        map[string]int64 `json:"rows"`
	Replays     []string         `json:"unfinished_replays,omitempty"`
	Errors      []string         `json:"errors,omitempty"`
}

func (e *adminEnv) status(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var s Status
	natsErr := e.natsErr
	if natsErr == nil {
		s.Stream, s.Consumer, natsErr = stream.Inspect(ctx, e.js)
	}
	dbErr := e.databaseStatus(ctx, &s)
	if natsErr != nil {
		s.Errors = append(s.Errors, natsErr.Error())
	}
	if dbErr != nil {
		s.Errors = append(s.Errors, dbErr.Error())
	}
	if *asJSON {
		out, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, string(out))
	} else {
		printStatus(e.stdout, s, natsErr, dbErr)
	}
	if err := errors.Join(natsErr, dbErr); err != nil {
		return fmt.Errorf("status incomplete: %w", err)
	}
	return nil
}

func (e *adminEnv) databaseStatus(ctx context.Context, s *Status) error {
	rows, err := e.st.RowCounts(ctx)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	s.DeadLetters = rows["dead_letters"]
	delete(rows, "dead_letters")
	s.Rows = rows
	cps, err := e.st.Checkpoints(ctx)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	for _, cp := range cps {
		s.Replays = append(s.Replays, fmt.Sprintf("%s: at stream sequence %d of %d, last run %s", cp.Name, cp.LastSeq, cp.EndSeq, cp.UpdatedAt.UTC().Format(time.RFC3339)))
	}
	return nil
}

func printStatus(w io.Writer, s Status, natsErr, dbErr error) {
	if st := s.Stream; st != nil {
		fmt.Fprintf(w, "stream %s: %d messages, %s, sequences %d to %d", stream.StreamName, st.Messages, bytesText(st.Bytes), st.FirstSeq, st.LastSeq)
		if st.Messages > 0 {
			fmt.Fprintf(w, ", %s to %s", st.FirstTime.UTC().Format(time.RFC3339), st.LastTime.UTC().Format(time.RFC3339))
		}
		maxBytes := "no size cap"
		if st.MaxBytes > 0 {
			maxBytes = "at most " + bytesText(uint64(st.MaxBytes))
		}
		fmt.Fprintf(w, "\n  kept for %s (0s: forever), %s, %d replica(s)\n", st.MaxAge, maxBytes, st.Replicas)
	}
	switch c := s.Consumer; {
	case natsErr != nil:
		fmt.Fprintf(w, "stream and writer: unknown: %v\n", natsErr)
	case c != nil:
		fmt.Fprintf(w, "writer: %d pending, %d awaiting ack, %d redelivered; delivered up to %d, acknowledged up to %d\n",
			c.NumPending, c.NumAckPending, c.NumRedelivered, c.DeliveredSeq, c.AckFloorSeq)
	default:
		fmt.Fprintln(w, "writer: no consumer yet (no writer has started)")
	}
	if dbErr != nil {
		fmt.Fprintf(w, "database: unknown: %v\n", dbErr)
		return
	}
	fmt.Fprintf(w, "dead letters: %d\n", s.DeadLetters)
	fmt.Fprint(w, "rows:")
	for _, t := range store.StreamTables {
		fmt.Fprintf(w, " %s %d", t, s.Rows[t])
	}
	fmt.Fprintln(w)
	for _, r := range s.Replays {
		fmt.Fprintf(w, "unfinished replay %s\n", r)
	}
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
