package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// asideSchema holds what a rebuild keeps beside the live tables: the ids of the events written
// into them during the rebuild (noteWritten), and after the swap the tables it replaced, until
// Close drops them. It is in no search path.
const asideSchema = "devopstic_rebuild_aside"

// noteWritten is the trigger that a rebuild puts on the live events table, to note the id of
// each event written there while it runs: the swap catches up those it lacks by looking them
// up, rather than by comparing the whole events table with the rebuilt one while the writers
// wait. It runs as its owner (SECURITY DEFINER), so that writers connected as another role need
// no rights on the rebuild's schema.
const noteWritten = "note_written"

// rebuildLock is the advisory lock that keeps two rebuilds from running at once.
const rebuildLock = 0x64657672656275 // "devrebu"

// The exchange's ACCESS EXCLUSIVE locks wait for the readers running when it asks for them, and
// readers that come meanwhile queue behind it. So each try gives up after exchangeLockTimeout
// (shorter than Postgres's deadlock_timeout, so that against a reader that locks the tables in
// another order the swap gives way before the deadlock check picks a victim) and the swap tries
// again after a backoff, swapTries times in all (a minute or so).
const (
	exchangeLockTimeout = 200 * time.Millisecond
	swapTries           = 30
	swapBackoff         = 50 * time.Millisecond // doubled after each try, up to maxSwapBackoff
	maxSwapBackoff      = 2 * time.Second
)

// ErrRebuildRunning means another rebuild holds the lock.
var ErrRebuildRunning = errors.New("another rebuild is running")

// ErrTablesBusy means the swap could not lock the live tables: readers held them through every
// try. The live tables are unchanged.
var ErrTablesBusy = errors.New("the live tables stayed in use")

// ErrNotSwappable means the live tables have something the rebuilt ones would not carry over
// (a view or foreign key over them, a trigger, an index or grant the copies lack): swapping
// would silently lose it, so the rebuild refuses. Swap must learn to carry it first.
var ErrNotSwappable = errors.New("the rebuilt tables cannot replace the live ones")

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
// filled through Write, then swapped in by Swap; Close ends it.
type Rebuild struct {
	s     *Store
	conn  *pgxpool.Conn // holds the advisory lock
	live  string        // the schema of the live tables
	tries int           // how many times Swap tries to take its locks: swapTries, fewer in tests
}

// BeginRebuild creates empty copies of StreamTables (columns, defaults, constraints and
// indexes, under the live indexes' names; unlogged until Swap, as they are scratch until
// then), and puts the trigger noteWritten on the live events table (the writers wait for that
// commit, a moment). It fails with ErrRebuildRunning when another rebuild is under way, and
// with ErrNotSwappable, before any work is done, when the live tables have something a swap
// would lose.
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
	r := &Rebuild{s: s, conn: conn, tries: swapTries}
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&r.live); err != nil {
		return nil, errors.Join(fmt.Errorf("begin rebuild: %w", err), r.Close(ctx))
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return r.createTables(ctx, tx) }); err != nil {
		return nil, errors.Join(fmt.Errorf("begin rebuild: %w", err), r.Close(ctx))
	}
	return r, nil
}

// createTables makes the rebuild's empty tables, gives their indexes the live ones' names,
// and puts the trigger noteWritten on the live events table.
func (r *Rebuild) createTables(ctx context.Context, tx pgx.Tx) error {
	stmts := []string{
		`DROP SCHEMA IF EXISTS ` + ident(rebuildSchema) + ` CASCADE`,
		`DROP SCHEMA IF EXISTS ` + ident(asideSchema) + ` CASCADE`,
		`CREATE SCHEMA ` + ident(rebuildSchema),
		`CREATE SCHEMA ` + ident(asideSchema),
	}
	for _, t := range StreamTables {
		stmts = append(stmts, fmt.Sprintf(`CREATE UNLOGGED TABLE %s (LIKE %s INCLUDING ALL)`, ident(rebuildSchema, t), ident(r.live, t)))
	}
	stmts = append(stmts,
		`CREATE UNLOGGED TABLE `+ident(asideSchema, "written")+` (id text NOT NULL)`,
		`CREATE FUNCTION `+ident(asideSchema, noteWritten)+`() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO `+ident(asideSchema, "written")+` (id) SELECT id FROM inserted;
    RETURN NULL;
END $$`,
	)
	for _, stmt := range stmts {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	if err := r.checkSwappable(ctx, tx); err != nil {
		return err
	}
	if err := r.nameIndexes(ctx, tx); err != nil {
		return err
	}
	// Last, as it holds the writers off until the commit.
	if _, err := tx.Exec(ctx, `CREATE TRIGGER `+ident("devopstic_rebuild_"+noteWritten)+` AFTER INSERT ON `+ident(r.live, "events")+`
REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION `+ident(asideSchema, noteWritten)+`()`); err != nil {
		return fmt.Errorf("note the events written during the rebuild: %w", err)
	}
	return nil
}

// tables are StreamTables in schema, quoted.
func tables(schema string) []string {
	q := make([]string, len(StreamTables))
	for i, t := range StreamTables {
		q[i] = ident(schema, t)
	}
	return q
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
// live ones. It returns how many keys it derived. The tables are new, and the planner knows
// nothing of them: all are analyzed before (plans made without statistics of the full base
// tables took 36 s instead of 4.5 s to derive 150,000 keys of a pipeline with many
// incidents), and those derivation writes are analyzed again after (the swap carries the
// statistics into the live tables).
func (r *Rebuild) Derive(ctx context.Context) (int64, error) {
	if err := r.analyze(ctx, StreamTables); err != nil {
		return 0, err
	}
	n, err := deriveQueued(ctx, r.s.pool, r.searchPath())
	if err != nil {
		return n, err
	}
	return n, r.analyze(ctx, derivedTables)
}

// derivedTables are the tables dora_derive writes (migrations 0009 and 0012).
var derivedTables = []string{"changes", "deployments", "incidents", "change_deployments", "lead_time_days",
	"derive_queue_commits", "derive_queue_attempts", "derive_queue_incidents"}

func (r *Rebuild) analyze(ctx context.Context, tables []string) error {
	for _, t := range tables {
		if _, err := r.s.pool.Exec(ctx, `ANALYZE `+ident(rebuildSchema, t)); err != nil {
			return fmt.Errorf("analyze the rebuilt %s: %w", t, err)
		}
	}
	return nil
}

// Swap puts the rebuilt tables in the live ones' place, in one transaction: readers see the
// old tables until it commits and the new ones after, never a mix. The events written into the
// live table since BeginRebuild (noted by its trigger, noteWritten) that the rebuild lacks,
// with a stream sequence after afterSeq, are mapped with decode and written into the rebuild
// first, so nothing written meanwhile is lost; a rebuild therefore reads what it rebuilds from
// (ScanEvents' snapshot, the stream's end) after BeginRebuild. It returns how many it caught
// up, and how long it held the writers off.
//
// It exchanges the tables themselves rather than copying their rows, so the writers' wait does
// not grow with the tables. Before any lock it makes the rebuilt tables logged (a rewrite),
// vacuums them, copies the live tables' owner and grants onto them, and catches
// up what the writer wrote so far. Then, in the transaction: EXCLUSIVE locks on the live
// tables hold the writers off (readers go on) while the events written since are caught up
// and the rebuilt tables are checked against the live ones (every column, constraint and
// index with its name, owner, grants: a difference fails with ErrNotSwappable); then ACCESS
// EXCLUSIVE locks, for the exchange alone, move the live tables into a schema of their own
// (Close drops them) and the rebuilt ones into the live schema. Functions find the new tables
// by name: PL/pgSQL and prepared statements plan again after the exchange.
//
// Readers never waited for the old copying swap; they may wait for this one: from the moment
// it asks for its ACCESS EXCLUSIVE locks to its commit, a few milliseconds once the running
// readers are done. It waits at most exchangeLockTimeout for them, then gives way (releasing
// everything, the writers too) and tries again after a backoff; after swapTries tries it fails
// with ErrTablesBusy, naming who held the tables, and leaves the live tables unchanged. Like
// TRUNCATE, the exchange is not MVCC-safe: a repeatable-read transaction whose snapshot
// predates it, and that reads a table only after it, may see that table empty. (One that read
// a table before holds it: the swap waits for it to end.)
func (r *Rebuild) Swap(ctx context.Context, afterSeq uint64, decode func([]RawEvent) ([]fact.Set, error)) (caughtUp int, held time.Duration, err error) {
	caughtUp, err = r.prepare(ctx, afterSeq, decode)
	if err != nil {
		return 0, 0, fmt.Errorf("swap the rebuilt tables in: %w", err)
	}
	backoff := swapBackoff
	for try := 1; ; try++ {
		began := time.Now()
		n, err := r.exchange(ctx, afterSeq, decode)
		held += time.Since(began)
		if err == nil {
			return caughtUp + n, held, nil
		}
		if !lockBusy(err) {
			return 0, held, fmt.Errorf("swap the rebuilt tables in: %w", err)
		}
		if try >= r.tries {
			return 0, held, fmt.Errorf("swap the rebuilt tables in: %w: %d tries, each waiting up to %s for its locks (the last: %w); holding them now: %s",
				ErrTablesBusy, try, exchangeLockTimeout, err, r.lockHolders(ctx))
		}
		select {
		case <-ctx.Done():
			return 0, held, fmt.Errorf("swap the rebuilt tables in: %w", ctx.Err())
		case <-time.After(backoff + rand.N(backoff)):
		}
		backoff = min(2*backoff, maxSwapBackoff)
	}
}

// prepare does what the swap can do before it holds anyone off: the rebuilt tables made logged
// and vacuumed (their visibility map lets index-only scans skip the heap; Derive analyzed
// them, and the rewrite keeps the statistics), the live tables' owner and grants copied onto
// them, and the events the writer wrote so far caught up. It returns how many it caught up.
func (r *Rebuild) prepare(ctx context.Context, afterSeq uint64, decode func([]RawEvent) ([]fact.Set, error)) (int, error) {
	rebuilt := tables(rebuildSchema)
	for _, t := range rebuilt {
		if _, err := r.conn.Exec(ctx, `ALTER TABLE `+t+` SET LOGGED`); err != nil {
			return 0, fmt.Errorf("make %s logged: %w", t, err)
		}
	}
	if _, err := r.conn.Exec(ctx, `VACUUM `+strings.Join(rebuilt, ", ")); err != nil {
		return 0, fmt.Errorf("vacuum the rebuilt tables: %w", err)
	}
	var n int
	err := pgx.BeginFunc(ctx, r.s.pool, func(tx pgx.Tx) error {
		if err := r.copyPrivileges(ctx, tx); err != nil {
			return err
		}
		var err error
		n, err = r.catchUp(ctx, tx, afterSeq, decode)
		return err
	})
	return n, err
}

// exchange is one try at the swap's transaction; it returns how many events it caught up.
func (r *Rebuild) exchange(ctx context.Context, afterSeq uint64, decode func([]RawEvent) ([]fact.Set, error)) (int, error) {
	live, rebuilt := tables(r.live), tables(rebuildSchema)
	var n int
	err := pgx.BeginFunc(ctx, r.s.pool, func(tx pgx.Tx) error {
		// EXCLUSIVE holds off the writers (locking in the order they do) and lets readers go on,
		// on the old tables. No one else uses the rebuilt ones.
		if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(live, ", ")+` IN EXCLUSIVE MODE;
LOCK TABLE `+strings.Join(rebuilt, ", ")+` IN ACCESS EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("lock the live tables: %w", err)
		}
		var err error
		if n, err = r.catchUp(ctx, tx, afterSeq, decode); err != nil {
			return err
		}
		if err := r.checkSwappable(ctx, tx); err != nil {
			return err
		}
		// A GRANT takes no lock on the table: one made since prepare is copied here.
		if err := r.copyPrivileges(ctx, tx); err != nil {
			return err
		}
		if err := r.compareTables(ctx, tx); err != nil {
			return err
		}
		// ACCESS EXCLUSIVE for the exchange alone: readers wait from here to the commit.
		stmts := []string{
			fmt.Sprintf(`SET LOCAL lock_timeout = %d`, exchangeLockTimeout.Milliseconds()),
			`LOCK TABLE ` + strings.Join(live, ", ") + ` IN ACCESS EXCLUSIVE MODE`,
		}
		for _, t := range StreamTables {
			stmts = append(stmts, `ALTER TABLE `+ident(r.live, t)+` SET SCHEMA `+ident(asideSchema))
		}
		for _, t := range StreamTables {
			stmts = append(stmts, `ALTER TABLE `+ident(rebuildSchema, t)+` SET SCHEMA `+ident(r.live))
		}
		if _, err := tx.Exec(ctx, strings.Join(stmts, ";\n")); err != nil {
			return fmt.Errorf("exchange the tables: %w", err)
		}
		return nil
	})
	return n, err
}

// lockBusy reports whether err is a try that gave way: its lock wait timed out, or it lost a
// deadlock to a reader.
func lockBusy(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "55P03" || pgErr.Code == "40P01") // lock_not_available, deadlock_detected
}

// lockHolders names the sessions that hold locks on the live tables, for the error that says
// the swap could not get them.
func (r *Rebuild) lockHolders(ctx context.Context) string {
	var who *string
	err := r.conn.QueryRow(ctx, `SELECT string_agg(DISTINCT format('pid %s (%s, %s, %s since %s: %s)', a.pid, a.usename,
    a.application_name, a.state, a.xact_start, left(a.query, 80)), '; ')
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_backend_pid() AND l.relation = ANY($1::text[]::regclass[])`, tables(r.live)).Scan(&who)
	switch {
	case err != nil:
		return fmt.Sprintf("unknown (%v)", err)
	case who == nil:
		return "no one"
	}
	return *who
}

// catchUp maps the events written into the live table since it last ran (noteWritten) that
// the rebuild lacks, with a stream sequence after afterSeq, and writes them into the rebuild's
// tables, in tx. It returns how many.
func (r *Rebuild) catchUp(ctx context.Context, tx pgx.Tx, afterSeq uint64, decode func([]RawEvent) ([]fact.Set, error)) (int, error) {
	rows, err := tx.Query(ctx, `DELETE FROM `+ident(asideSchema, "written")+` RETURNING id`)
	if err != nil {
		return 0, fmt.Errorf("find events written during the rebuild: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("find events written during the rebuild: %w", err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	rows, err = tx.Query(ctx, rawEventSelect+ident(r.live, "events")+` o WHERE o.id = ANY($1) AND o.stream_seq > $2
AND NOT EXISTS (SELECT 1 FROM `+ident(rebuildSchema, "events")+` n WHERE n.id = o.id AND n.stream_seq = o.stream_seq)`, ids, int64(afterSeq))
	if err != nil {
		return 0, fmt.Errorf("find events written during the rebuild: %w", err)
	}
	missing, err := pgx.CollectRows(rows, scanRawEvent)
	if err != nil {
		return 0, fmt.Errorf("find events written during the rebuild: %w", err)
	}
	if len(missing) == 0 {
		return 0, nil
	}
	sets, err := decode(missing)
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, r.searchPath()); err != nil {
		return 0, err
	}
	if err := writeSets(ctx, tx, sets, deriveNow); err != nil {
		return 0, fmt.Errorf("write events written during the rebuild: %w", err)
	}
	if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+ident(r.live)); err != nil {
		return 0, err
	}
	return len(missing), nil
}

// dependents lists what depends on a live table from outside it (a view's rule, another
// table's foreign key, a trigger, a policy, a SQL-standard function body, a sequence it owns,
// extended statistics, a function taking its row type, a table inheriting from it):
// everything that pg_depend ties to the table, or to its row type, except its own indexes,
// TOAST table, row and array types, column defaults, constraints other than foreign keys, and
// the rebuild's own trigger ($2, noteWritten). A swap would leave each of these with the old
// table.
const dependents = `
SELECT format('%s depends on %s', pg_describe_object(d.classid, d.objid, d.objsubid), c.oid::regclass)
FROM pg_class c
JOIN pg_depend d ON (d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid)
                 OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = c.reltype)
WHERE c.oid = ANY($1::text[]::regclass[])
  AND NOT CASE d.classid
    WHEN 'pg_class'::regclass THEN d.objid = c.reltoastrelid
                              OR EXISTS (SELECT FROM pg_index i WHERE i.indexrelid = d.objid AND i.indrelid = c.oid)
    WHEN 'pg_type'::regclass THEN d.objid = c.reltype
                             OR d.objid = (SELECT typarray FROM pg_type WHERE oid = c.reltype)
    WHEN 'pg_attrdef'::regclass THEN EXISTS (SELECT FROM pg_attrdef a WHERE a.oid = d.objid AND a.adrelid = c.oid)
    WHEN 'pg_constraint'::regclass THEN EXISTS (SELECT FROM pg_constraint k WHERE k.oid = d.objid AND k.conrelid = c.oid AND k.contype <> 'f')
    WHEN 'pg_trigger'::regclass THEN EXISTS (SELECT FROM pg_trigger g WHERE g.oid = d.objid AND g.tgfoid = $2::text::regprocedure)
    ELSE false END
UNION
SELECT format('the grant of %s on %s to %s was made by %s, not by its owner %s', a.privilege_type, c.oid::regclass,
              CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, pg_get_userbyid(a.grantor), pg_get_userbyid(c.relowner))
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.oid = ANY($1::text[]::regclass[]) AND a.grantor <> c.relowner
ORDER BY 1`

// checkSwappable fails with ErrNotSwappable when the live tables have dependents (see
// dependents), or a grant made by another role than their owner (a swap copies grants as the
// owner's).
func (r *Rebuild) checkSwappable(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, dependents, tables(r.live), ident(asideSchema, noteWritten)+"()")
	if err != nil {
		return fmt.Errorf("find what depends on the live tables: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("find what depends on the live tables: %w", err)
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: a swap would leave these with the old tables: %s", ErrNotSwappable, strings.Join(found, "; "))
	}
	return nil
}

// indexKey is an index's definition without its name and table: what a rebuilt index and the
// live one it copies have in common.
const indexKey = `concat_ws(' ', CASE WHEN x.indisunique THEN 'UNIQUE' END,
    (SELECT contype FROM pg_constraint k WHERE k.conindid = i.oid AND k.conrelid = x.indrelid AND k.contype IN ('p', 'u', 'x')),
    ltrim(substr(pg_get_indexdef(i.oid), strpos(pg_get_indexdef(i.oid), ' USING '))))`

// nameIndexes renames each rebuilt index to the name of the live index it copies (LIKE ...
// INCLUDING ALL names them after their columns), matching them by definition; a constraint
// follows its index's name. A live index without a counterpart fails with ErrNotSwappable.
func (r *Rebuild) nameIndexes(ctx context.Context, tx pgx.Tx) error {
	type index struct{ schema, table, name, key string }
	rows, err := tx.Query(ctx, `SELECT n.nspname, t.relname, i.relname, `+indexKey+`
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE t.oid = ANY($1::text[]::regclass[])
ORDER BY 1, 2, 3`, append(tables(r.live), tables(rebuildSchema)...))
	if err != nil {
		return fmt.Errorf("list the indexes: %w", err)
	}
	indexes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (index, error) {
		var i index
		return i, row.Scan(&i.schema, &i.table, &i.name, &i.key)
	})
	if err != nil {
		return fmt.Errorf("list the indexes: %w", err)
	}
	rebuilt := map[[2]string][]string{} // table and key: names
	for _, i := range indexes {
		if i.schema == rebuildSchema {
			rebuilt[[2]string{i.table, i.key}] = append(rebuilt[[2]string{i.table, i.key}], i.name)
		}
	}
	var from, to []string // renames, in two steps so that no name is taken twice meanwhile
	for _, i := range indexes {
		if i.schema != r.live {
			continue
		}
		k := [2]string{i.table, i.key}
		if len(rebuilt[k]) == 0 {
			return fmt.Errorf("%w: the live index %s on %s (%s) has no counterpart in the rebuilt table", ErrNotSwappable, i.name, i.table, i.key)
		}
		if name := rebuilt[k][0]; name != i.name {
			from, to = append(from, name), append(to, i.name)
		}
		rebuilt[k] = rebuilt[k][1:]
	}
	for k, names := range rebuilt {
		if len(names) > 0 {
			return fmt.Errorf("%w: the rebuilt index %s on %s (%s) has no counterpart in the live table", ErrNotSwappable, names[0], k[0], k[1])
		}
	}
	for step := range 2 {
		for i := range from {
			old, name := from[i], fmt.Sprintf("devopstic_rebuild_index_%d", i)
			if step == 1 {
				old, name = name, to[i]
			}
			if _, err := tx.Exec(ctx, `ALTER INDEX `+ident(rebuildSchema, old)+` RENAME TO `+ident(name)); err != nil {
				return fmt.Errorf("name the rebuilt index %s %s: %w", from[i], to[i], err)
			}
		}
	}
	return nil
}

// copyPrivileges gives each rebuilt table the live one's owner and exactly its grants, where
// they differ.
func (r *Rebuild) copyPrivileges(ctx context.Context, tx pgx.Tx) error {
	// For each table that differs: its new owner (NULL when the same), every role with a grant
	// on the rebuilt table (to revoke), then the live table's grants.
	rows, err := tx.Query(ctx, `
WITH pair AS (
    SELECT o.oid AS old, n.oid AS new, o.relowner AS owner, n.relowner <> o.relowner AS new_owner
    FROM unnest($1::text[]::regclass[], $2::text[]::regclass[]) AS p(old, new)
    JOIN pg_class o ON o.oid = p.old JOIN pg_class n ON n.oid = p.new
    WHERE n.relowner <> o.relowner
       OR ARRAY(SELECT a::text FROM unnest(coalesce(o.relacl, acldefault('r', o.relowner))) a ORDER BY 1)
          <> ARRAY(SELECT a::text FROM unnest(coalesce(n.relacl, acldefault('r', n.relowner))) a ORDER BY 1)
)
SELECT stmt FROM (
    SELECT p.new, 1 AS step, format('ALTER TABLE %s OWNER TO %I', p.new::regclass, pg_get_userbyid(p.owner)) AS stmt
    FROM pair p WHERE p.new_owner
    UNION ALL
    SELECT DISTINCT p.new, 2, format('REVOKE ALL ON %s FROM %s', p.new::regclass,
                                     CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END)
    FROM pair p JOIN pg_class n ON n.oid = p.new, aclexplode(coalesce(n.relacl, acldefault('r', n.relowner))) a
    UNION ALL
    SELECT p.new, 3, format('GRANT %s ON %s TO %s%s', string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type), p.new::regclass,
                            CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                            CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
    FROM pair p JOIN pg_class o ON o.oid = p.old, aclexplode(coalesce(o.relacl, acldefault('r', o.relowner))) a
    GROUP BY p.new, a.grantee, a.is_grantable
) s ORDER BY new, step, stmt`, tables(r.live), tables(rebuildSchema))
	if err != nil {
		return fmt.Errorf("compare the tables' privileges: %w", err)
	}
	stmts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("compare the tables' privileges: %w", err)
	}
	for _, stmt := range stmts {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("copy the live tables' privileges: %s: %w", stmt, err)
		}
	}
	return nil
}

// tableShape describes each table of $1 in lines that name every column, constraint and
// index, and the table's owner, grants and options: the same lines for a rebuilt table and
// the live one it replaces, unless the copy missed something.
const tableShape = `
WITH t AS (SELECT c.*, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.oid = ANY($1::text[]::regclass[]))
SELECT t.nspname, t.relname,
       format('table kind=%s persistence=%s owner=%s acl=%s options=%s replica_identity=%s tablespace=%s row_security=%s/%s comment=%s inherits=%s',
              t.relkind, t.relpersistence, pg_get_userbyid(t.relowner),
              ARRAY(SELECT a::text FROM unnest(coalesce(t.relacl, acldefault('r', t.relowner))) a ORDER BY 1),
              t.reloptions, t.relreplident, t.reltablespace, t.relrowsecurity, t.relforcerowsecurity, obj_description(t.oid, 'pg_class'),
              ARRAY(SELECT inhparent::regclass::text FROM pg_inherits WHERE inhrelid = t.oid ORDER BY inhseqno))
FROM t
UNION ALL
SELECT t.nspname, t.relname,
       format('column %s %s %s not_null=%s default=%s generated=%s identity=%s collation=%s storage=%s statistics=%s options=%s acl=%s comment=%s',
              row_number() OVER (PARTITION BY t.oid ORDER BY a.attnum), quote_ident(a.attname), format_type(a.atttypid, a.atttypmod),
              a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity, a.attcollation, a.attstorage,
              a.attstattarget, a.attoptions, a.attacl, col_description(t.oid, a.attnum))
FROM t JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = t.oid AND d.adnum = a.attnum
UNION ALL
SELECT t.nspname, t.relname,
       format('constraint %s %s deferrable=%s deferred=%s validated=%s comment=%s', quote_ident(k.conname), pg_get_constraintdef(k.oid),
              k.condeferrable, k.condeferred, k.convalidated, obj_description(k.oid, 'pg_constraint'))
FROM t JOIN pg_constraint k ON k.conrelid = t.oid
UNION ALL
SELECT t.nspname, t.relname,
       format('index %s %s valid=%s clustered=%s replica_identity=%s tablespace=%s comment=%s', quote_ident(i.relname), ` + indexKey + `,
              x.indisvalid, x.indisclustered, x.indisreplident, i.reltablespace, obj_description(i.oid, 'pg_class'))
FROM t JOIN pg_index x ON x.indrelid = t.oid JOIN pg_class i ON i.oid = x.indexrelid`

// compareTables fails with ErrNotSwappable when a rebuilt table differs from the live one
// (tableShape): a migration changed the live one during the rebuild, or the copy missed
// something that the swap would then lose.
func (r *Rebuild) compareTables(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, tableShape, append(tables(r.live), tables(rebuildSchema)...))
	if err != nil {
		return fmt.Errorf("compare the rebuilt tables with the live ones: %w", err)
	}
	type line struct{ schema, table, text string }
	lines, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (line, error) {
		var l line
		return l, row.Scan(&l.schema, &l.table, &l.text)
	})
	if err != nil {
		return fmt.Errorf("compare the rebuilt tables with the live ones: %w", err)
	}
	live, rebuilt := map[string]bool{}, map[string]bool{}
	for _, l := range lines {
		if l.schema == r.live {
			live[l.table+": "+l.text] = true
		} else {
			rebuilt[l.table+": "+l.text] = true
		}
	}
	var diff []string
	for l := range live {
		if !rebuilt[l] {
			diff = append(diff, "live "+l)
		}
	}
	for l := range rebuilt {
		if !live[l] {
			diff = append(diff, "rebuilt "+l)
		}
	}
	if len(diff) > 0 {
		slices.Sort(diff)
		return fmt.Errorf("%w: they differ (did a migration run during the rebuild?): %s", ErrNotSwappable, strings.Join(diff, "; "))
	}
	return nil
}

// Close drops the rebuild's tables, and the live tables a Swap replaced, and releases its
// lock. Before a Swap it abandons the rebuild and leaves the live tables as they were (it
// takes the trigger off the events table, which holds off readers and writers for a moment).
// Calling it again does nothing.
func (r *Rebuild) Close(ctx context.Context) error {
	if r.conn == nil {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	_, dropErr := r.conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+ident(rebuildSchema)+`, `+ident(asideSchema)+` CASCADE`)
	_, unlockErr := r.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, rebuildLock)
	r.conn.Release()
	r.conn = nil
	if err := errors.Join(dropErr, unlockErr); err != nil {
		return fmt.Errorf("end rebuild: %w", err)
	}
	return nil
}

func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }
