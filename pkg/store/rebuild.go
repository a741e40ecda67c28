package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/devopstic/devopstic/pkg/fact"
)

// StreamTables are the tables that are a pure function of the stream: the ones Write fills and
// a rebuild recomputes, in the order a rebuild refills them (a referenced table first). A table
// that Write starts filling must be added here; a rebuild fails loudly until it is.
var StreamTables = []string{"events", "changes", "deployments", "deployment_commits", "incidents", "pipelines", "pipeline_environments",
	"push_commits", "change_links", "change_deployments", "lead_time_days",
	"derive_queue_commits", "derive_queue_attempts", "derive_queue_incidents"}

// rebuildSchema holds a rebuild's fresh tables until they are swapped in.
const rebuildSchema = "devopstic_rebuild"

// rebuildLock is the advisory lock that keeps two rebuilds from running at once.
const rebuildLock = 0x64657672656275 // "devrebu"

// ErrRebuildRunning means another rebuild holds the lock.
var ErrRebuildRunning = errors.New("another rebuild is running")

// RawEvent is what the events table keeps of a stream message: enough to map it again.
type RawEvent struct {
	ID         string
	Source     string
	Kind       string
	Payload    []byte
	ReceivedAt time.Time
	StreamSeq  uint64
	Headers    map[string][]string // nil in rows written before migration 0003
}

const rawEventSelect = `SELECT id, source, kind, payload, received_at, stream_seq, headers FROM `

// ScanEvents calls fn with every row of the events table, in batches of up to size, all read
// from one snapshot. It returns how many rows it read.
func (s *Store) ScanEvents(ctx context.Context, size int, fn func([]RawEvent) error) (int64, error) {
	var n int64
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, rawEventSelect+`events`)
		if err != nil {
			return err
		}
		defer rows.Close()
		batch := make([]RawEvent, 0, size)
		for rows.Next() {
			e, err := scanRawEvent(rows)
			if err != nil {
				return err
			}
			batch = append(batch, e)
			n++
			if len(batch) == size {
				if err := fn(batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(batch) > 0 {
			return fn(batch)
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("read the events table: %w", err)
	}
	return n, nil
}

func scanRawEvent(rows pgx.CollectableRow) (RawEvent, error) {
	var e RawEvent
	var seq int64
	err := rows.Scan(&e.ID, &e.Source, &e.Kind, &e.Payload, &e.ReceivedAt, &seq, &e.Headers)
	e.StreamSeq = uint64(seq)
	return e, err
}

// Rebuild is a rebuild in progress: empty copies of StreamTables in a schema of their own,
// filled through Write, then swapped in by Swap.
type Rebuild struct {
	s    *Store
	conn *pgxpool.Conn // holds the advisory lock
	live string        // the schema of the live tables
}

// BeginRebuild creates empty copies of StreamTables (columns, defaults, constraints and
// indexes; unlogged, as they are scratch until swapped in). It fails with ErrRebuildRunning
// when another rebuild is under way.
func (s *Store) BeginRebuild(ctx context.Context) (*Rebuild, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin rebuild: %w", err)
	}
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, rebuildLock).Scan(&locked); err != nil {
		conn.Release()
		return nil, fmt.Errorf("begin rebuild: %w", err)
	}
	if !locked {
		conn.Release()
		return nil, ErrRebuildRunning
	}
	r := &Rebuild{s: s, conn: conn}
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&r.live); err != nil {
		return nil, errors.Join(fmt.Errorf("begin rebuild: %w", err), r.Close(ctx))
	}
	stmts := []string{
		`DROP SCHEMA IF EXISTS ` + ident(rebuildSchema) + ` CASCADE`,
		`CREATE SCHEMA ` + ident(rebuildSchema),
	}
	for _, t := range StreamTables {
		stmts = append(stmts, fmt.Sprintf(`CREATE UNLOGGED TABLE %s (LIKE %s INCLUDING ALL)`, ident(rebuildSchema, t), ident(r.live, t)))
	}
	for _, stmt := range stmts {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return nil, errors.Join(fmt.Errorf("begin rebuild: %s: %w", stmt, err), r.Close(ctx))
		}
	}
	return r, nil
}

// searchPath makes the rebuild's tables the ones a statement names. The live schema follows
// so that the functions the statements call (dora_derive, from the migrations) are found; the
// rebuild's schema holds every table they write or read (StreamTables).
func (r *Rebuild) searchPath() string {
	return `SET LOCAL search_path TO ` + ident(rebuildSchema) + `, ` + ident(r.live)
}

// Write writes sets into the rebuild's tables exactly as Deferred.Write writes them into the
// live ones: the same statements, with the rebuild's schema searched first. Derive derives
// them before the swap.
func (r *Rebuild) Write(ctx context.Context, sets []fact.Set) error {
	if len(sets) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, r.s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, r.searchPath()); err != nil {
			return err
		}
		return writeSets(ctx, tx, sets, deriveLater)
	})
	if err != nil {
		return fmt.Errorf("write %d events into the rebuild: %w", len(sets), err)
	}
	return nil
}

// Derive derives what Write queued in the rebuild's tables, as Store.DeriveQueued does in the
// live ones. It returns how many keys it derived.
// The tables are analyzed after: they are new, and the planner's statistics of them, which
// the swap carries into the live tables, say nothing yet.
func (r *Rebuild) Derive(ctx context.Context) (int64, error) {
	n, err := deriveQueued(ctx, r.s.pool, r.searchPath())
	if err != nil {
		return n, err
	}
	for _, t := range StreamTables {
		if _, err := r.s.pool.Exec(ctx, `ANALYZE `+ident(rebuildSchema, t)); err != nil {
			return n, fmt.Errorf("analyze the rebuilt %s: %w", t, err)
		}
	}
	return n, nil
}

// Swap replaces the contents of the live tables with the rebuilt ones, in one transaction:
// readers see the old rows until it commits and the new ones after, never a mix, and never wait.
// First, with
// the writers held off, it maps the events the writer added since the rebuild began (those
// with a stream sequence after afterSeq that the rebuild lacks) with decode and writes them into
// the rebuild, so nothing written meanwhile is lost. It returns how many it caught up, and how long it held the writers off.
//
// The copy rather than a rename keeps every view, function, grant and index name of the live
// tables as the migrations made them; its price is that the writers wait for the copy
// (measured in TestRebuildWhileWriting) and a VACUUM afterwards.
func (r *Rebuild) Swap(ctx context.Context, afterSeq uint64, decode func([]RawEvent) ([]fact.Set, error)) (caughtUp int, held time.Duration, err error) {
	live := make([]string, len(StreamTables))
	for i, t := range StreamTables {
		live[i] = ident(r.live, t)
	}
	began := time.Now()
	err = pgx.BeginFunc(ctx, r.s.pool, func(tx pgx.Tx) error {
		// EXCLUSIVE holds off the writers (locking in the order they do, so no deadlock) and
		// lets readers go on, on the old rows, until the commit.
		if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(live, ", ")+` IN EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("lock the live tables: %w", err)
		}
		rows, err := tx.Query(ctx, rawEventSelect+ident(r.live, "events")+` o WHERE o.stream_seq > $1
AND NOT EXISTS (SELECT 1 FROM `+ident(rebuildSchema, "events")+` n WHERE n.stream_seq = o.stream_seq)`, int64(afterSeq))
		if err != nil {
			return fmt.Errorf("find events written during the rebuild: %w", err)
		}
		missing, err := pgx.CollectRows(rows, scanRawEvent)
		if err != nil {
			return fmt.Errorf("find events written during the rebuild: %w", err)
		}
		if len(missing) > 0 {
			sets, err := decode(missing)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, r.searchPath()); err != nil {
				return err
			}
			if err := writeSets(ctx, tx, sets, deriveNow); err != nil {
				return fmt.Errorf("write events written during the rebuild: %w", err)
			}
			if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+ident(r.live)); err != nil {
				return err
			}
			caughtUp = len(missing)
		}
		// DELETE, not TRUNCATE: readers go on seeing the old rows until the commit.
		for i := len(live) - 1; i >= 0; i-- {
			if _, err := tx.Exec(ctx, `DELETE FROM `+live[i]); err != nil {
				return fmt.Errorf("empty %s: %w", live[i], err)
			}
		}
		for _, t := range StreamTables {
			var cols string
			err := tx.QueryRow(ctx, `SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''`, ident(r.live, t)).Scan(&cols)
			if err != nil {
				return fmt.Errorf("columns of %s: %w", t, err)
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (%s) SELECT %s FROM %s`, ident(r.live, t), cols, cols, ident(rebuildSchema, t))); err != nil {
				return fmt.Errorf("fill %s: %w", t, err)
			}
		}
		return nil
	})
	held = time.Since(began)
	if err != nil {
		return 0, held, fmt.Errorf("swap the rebuilt tables in: %w", err)
	}
	// The old rows are dead tuples now; reclaim them (and refresh the planner's statistics)
	// rather than wait for autovacuum. Best effort: the swap is done.
	for _, t := range live {
		if _, err := r.conn.Exec(ctx, `VACUUM ANALYZE `+t); err != nil {
			break
		}
	}
	return caughtUp, held, nil
}

// Close drops the rebuild's tables and releases its lock. After a Swap it only tidies up;
// before one it abandons the rebuild and leaves the live tables as they were.
func (r *Rebuild) Close(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	_, dropErr := r.conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+ident(rebuildSchema)+` CASCADE`)
	_, unlockErr := r.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, rebuildLock)
	r.conn.Release()
	if err := errors.Join(dropErr, unlockErr); err != nil {
		return fmt.Errorf("end rebuild: %w", err)
	}
	return nil
}

func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }
