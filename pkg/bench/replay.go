package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/devopstic/devopstic/pkg/replay"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/writer"
)

// ---- 3a. and 3b. Replay and rebuild

// replayDB is the second database of a run: created empty and migrated beside the run's own
// on the same server, filled by the replay step, recomputed by the rebuild step, then dropped.
// A database of its own, not the run's, so that the replay starts from empty tables as a
// restore from scratch would, and so that neither step leaves rows or dead tuples behind for
// the steps after them.
type replayDB struct {
	name string
	st   *store.Store
}

// measureReplay applies the stream range of the backlog the writer drained into empty tables
// again, into a fresh database, exactly as `devopstic replay --from <first> --to <last>` does:
// replay.Stream, an Applier built as the command builds it, the writer's default batch size,
// a checkpoint per batch. It checks that the replayed tables hold what the writer wrote, row
// count for row count, and compares the rate with COPY.
func (r *runner) measureReplay(ctx context.Context) error {
	from, to := r.emptyBacklog.first, r.emptyBacklog.last
	if from == 0 || to < from {
		return errors.New("no backlog in the stream to replay: the writer step into empty tables did not run")
	}
	// What the writer made of the backlog, to compare with: the run's database holds nothing else yet.
	want, err := r.st.RowCounts(ctx)
	if err != nil {
		return fmt.Errorf("the writer's tables: %w", err)
	}
	if want["events"] != int64(r.backlog) {
		return fmt.Errorf("the run's database holds %d events, not the backlog's %d alone: nothing to compare the replay with", want["events"], r.backlog)
	}
	db, err := r.createReplayDB(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.cfg.Progress, "      replaying stream sequences %d to %d into the empty database %s\n", from, to, db.name)
	ap := r.applier(db.st)
	opts := replay.Options{BatchSize: r.writerTuning.BatchSize, Checkpoint: true, Progress: &indented{w: r.cfg.Progress}}
	// Timed here, around the whole call, as the operator waits for it (Summary.Elapsed has
	// not always counted the derivation at its end).
	began := time.Now()
	sum, err := replay.Stream(ctx, r.js, &ap, replay.Range{From: replay.Bound{Seq: from}, To: replay.Bound{Seq: to}}, opts)
	elapsed := time.Since(began)
	if err != nil {
		return fmt.Errorf("replay stream sequences %d to %d: %w", from, to, err)
	}
	switch {
	case sum.DeadLettered > 0:
		return fmt.Errorf("the replay sent %d of the backlog's %d events to dead_letters", sum.DeadLettered, r.backlog)
	case sum.Messages != int64(r.backlog):
		return fmt.Errorf("the replay applied %d messages of a backlog of %d", sum.Messages, r.backlog)
	}
	got, err := db.st.RowCounts(ctx)
	if err != nil {
		return err
	}
	if got["events"] != int64(r.backlog) {
		return fmt.Errorf("the replay wrote %d events of a backlog of %d", got["events"], r.backlog)
	}
	if err := sameCounts(got, "the replayed tables", want, "the writer's"); err != nil {
		return err
	}
	rate := float64(sum.Messages) / elapsed.Seconds()
	r.add(compare(Row{
		Figure: fmt.Sprintf("replay: the stream's backlog of %d events into an empty database (devopstic replay, batches of %d)",
			sum.Messages, r.writerTuning.BatchSize),
		Measured: fmt.Sprintf("%s (%s, of which deriving %s)", perSecond(rate), elapsed.Round(10*time.Millisecond),
			sum.Deriving.Round(10*time.Millisecond)),
		Baseline: perSecond(r.ceilings["copy"]) + " (COPY)", Target: "≥ 50% of COPY",
	}, rate, r.ceilings["copy"], 0.5))
	return nil
}

// measureRebuild recomputes every table of the replayed database from its events table, as
// `devopstic rebuild` does by default (replay.Rebuild without a stream), and drops the
// database. It covers the backlog's events only, not the metrics API's year, so that its run
// time stays that of the replay. The rebuilt tables must hold as many rows as before: the
// same events, mapped again. Two rows: the rate against COPY, and how long the swap held the
// writers per million events.
func (r *runner) measureRebuild(ctx context.Context) error {
	db := r.replayed
	if db == nil {
		return errors.New("no replayed database to rebuild: the replay step did not run")
	}
	began := time.Now()
	sum, err := replay.Rebuild(ctx, db.st, nil, false, r.applier(db.st),
		replay.Options{BatchSize: r.writerTuning.BatchSize, Progress: &indented{w: r.cfg.Progress}})
	elapsed := time.Since(began)
	if err != nil {
		return err
	}
	if sum.Read != int64(r.backlog) {
		return fmt.Errorf("the rebuild mapped %d events of the %d in the events table", sum.Read, r.backlog)
	}
	if err := sameCounts(sum.After, "the rebuilt tables", sum.Before, "the replayed ones"); err != nil {
		return err
	}
	fmt.Fprintf(r.cfg.Progress, "      rebuilt %d events in %s; the swap held the writers %s\n",
		sum.Read, elapsed.Round(10*time.Millisecond), sum.Swap.Round(time.Millisecond))
	rate := float64(sum.Read) / elapsed.Seconds()
	r.add(compare(Row{
		Figure: fmt.Sprintf("rebuild: %d events from the events table, every table recomputed and swapped in (devopstic rebuild, batches of %d)",
			sum.Read, r.writerTuning.BatchSize),
		Measured: fmt.Sprintf("%s (%s, of which deriving %s and the swap %s)", perSecond(rate), elapsed.Round(10*time.Millisecond),
			sum.Deriving.Round(10*time.Millisecond), sum.Swap.Round(10*time.Millisecond)),
		Baseline: perSecond(r.ceilings["copy"]) + " (COPY)", Target: "≥ 50% of COPY",
	}, rate, r.ceilings["copy"], 0.5))
	perMillion := sum.Swap.Seconds() / (float64(sum.Read) / 1e6)
	r.add(Row{
		Figure:   fmt.Sprintf("rebuild: the writers held off during the swap of %d events", sum.Read),
		Measured: fmt.Sprintf("%s (%.2f s per million events)", millis(sum.Swap), perMillion),
		Target:   "< 1 s per million events", Verdict: verdict(perMillion < 1),
	})
	return r.dropReplayDB(ctx)
}

// applier is a writer.Applier on st built as `devopstic replay` and `devopstic rebuild` build
// theirs (services/devopstic/admin.go).
func (r *runner) applier(st *store.Store) writer.Applier {
	return writer.Applier{Store: st, RetryMax: r.writerTuning.RetryMax, Log: r.log}
}

// createReplayDB creates the replayed database, named after the run's with "_replay" appended
// (one left by an interrupted run is dropped first), migrates it and opens it with the
// connections `devopstic replay` opens.
func (r *runner) createReplayDB(ctx context.Context) (*replayDB, error) {
	u, err := url.Parse(r.cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, errors.New("the replay step needs the database URL in the postgres:// form, to name a second database on its server")
	}
	var current string
	if err := r.pool.QueryRow(ctx, `SELECT current_database()`).Scan(&current); err != nil {
		return nil, fmt.Errorf("name of the run's database: %w", err)
	}
	name := current + "_replay"
	for _, stmt := range []string{
		`DROP DATABASE IF EXISTS ` + pgx.Identifier{name}.Sanitize() + ` WITH (FORCE)`,
		`CREATE DATABASE ` + pgx.Identifier{name}.Sanitize(),
	} {
		if _, err := r.pool.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("%s: %w", stmt, err)
		}
	}
	// Registered before it is usable, so that a failure below still drops it.
	r.replayed = &replayDB{name: name}
	u.Path = "/" + name
	if err := store.Migrate(ctx, u.String()); err != nil {
		return nil, fmt.Errorf("migrate %s: %w", name, err)
	}
	if r.replayed.st, err = store.Open(ctx, u.String(), 4); err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	return r.replayed, nil
}

// dropReplayDB closes and drops the replayed database, if there is one.
func (r *runner) dropReplayDB(ctx context.Context) error {
	db := r.replayed
	if db == nil {
		return nil
	}
	r.replayed = nil
	if db.st != nil {
		db.st.Close()
	}
	stmt := `DROP DATABASE IF EXISTS ` + pgx.Identifier{db.name}.Sanitize() + ` WITH (FORCE)`
	if _, err := r.pool.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

// sameCounts fails when two sets of row counts differ on a table of store.StreamTables: the
// same events, applied by the same code, must make the same rows whatever the path.
func sameCounts(got map[string]int64, gotName string, want map[string]int64, wantName string) error {
	var errs []error
	for _, t := range store.StreamTables {
		if got[t] != want[t] {
			errs = append(errs, fmt.Errorf("%s: %d rows in %s, %d in %s", t, got[t], gotName, want[t], wantName))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s differ from %s: %w", gotName, wantName, errors.Join(errs...))
	}
	return nil
}

// indented writes the replay package's progress lines under a step, indented as the bench's own.
type indented struct {
	w   io.Writer
	mid bool // the last write ended inside a line
}

func (i *indented) Write(p []byte) (int, error) {
	var out []byte
	for _, c := range p {
		if !i.mid {
			out = append(out, "      "...)
		}
		out = append(out, c)
		i.mid = c != '\n'
	}
	if _, err := i.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
