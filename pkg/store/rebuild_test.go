package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/bench"
	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/testenv"
)

// A swap puts tables in the live ones' place that hold what a single run of every event gives,
// the events written during the rebuild included, under the live tables' names: index and
// constraint names and definitions as the migrations made them, owner and grants (one made
// during the rebuild too). The writer during the rebuild connects as a role of its own, with
// no rights on the rebuild's schemas. The reads and the writer go on working on connections
// that planned their statements and the DORA functions' on the old tables.
func TestSwapPutsTheRebuiltTablesInPlace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sets := historySets(t, "swap", 1500, 0)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(sets), func(i, j int) { sets[i], sets[j] = sets[j], sets[i] })
	before, during, after := sets[:1000], sets[1000:1300], sets[1300:]

	want := openStore(t, 4)
	write(t, want.st, sets[:1300])
	// Three connections: the rebuild holds one, reading the events table another, writing into the
	// rebuild the third; each reads and writes before the swap and after it.
	got := openStore(t, 3)
	write(t, got.st, before)
	reader := createRole(t, got.pool, "swap_reader")
	exec(t, got.pool, `GRANT SELECT ON ALL TABLES IN SCHEMA public TO `+reader)
	writer := createRole(t, got.pool, "swap_writer")
	exec(t, got.pool, `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO `+writer)
	writerStore, err := store.Open(ctx, asRole(t, got.url, writer), 2)
	require.NoError(t, err)
	t.Cleanup(writerStore.Close)
	reads(t, got.st) // plans the reads on the live tables
	indexes, constraints := catalog(t, got.pool, indexesQuery), catalog(t, got.pool, constraintsQuery)

	rb, err := got.st.BeginRebuild(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rb.Close(ctx) })
	rebuildFromTable(t, got.st, rb)
	write(t, writerStore, during) // the live writer goes on
	exec(t, got.pool, `GRANT INSERT ON changes TO PUBLIC`)
	grants := catalog(t, got.pool, grantsQuery)
	caught, held, err := rb.Swap(ctx, 0, decodeNative)
	require.NoError(t, err)
	require.NoError(t, rb.Close(ctx))
	t.Logf("the swap held the writers %s", held)
	require.Equal(t, len(during), caught, "events written during the rebuild caught up")

	require.Equal(t, dumpTables(t, want.pool), dumpTables(t, got.pool))
	require.Equal(t, indexes, catalog(t, got.pool, indexesQuery), "index names and definitions")
	require.Equal(t, constraints, catalog(t, got.pool, constraintsQuery), "constraint names and definitions")
	require.Equal(t, grants, catalog(t, got.pool, grantsQuery), "owners and grants")
	require.Contains(t, grants, "changes: =a/"+ownerOf(t, got.pool, "changes"), "the grant made during the rebuild is there")
	for _, table := range store.StreamTables {
		require.True(t, hasPrivilege(t, got.pool, reader, table), "%s may read %s", reader, table)
	}
	require.Equal(t, 0, count(t, got.pool, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'devopstic_rebuild%'`), "scratch schemas left behind")
	require.Equal(t, 0, count(t, got.pool, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'events'::regclass`), "the rebuild's trigger left behind")

	requireSameReads(t, want.st, got.st)
	write(t, want.st, after)
	write(t, got.st, after)
	require.Equal(t, dumpTables(t, want.pool), dumpTables(t, got.pool), "written after the swap")
	requireSameReads(t, want.st, got.st)
}

// A rebuild refuses to start, or to swap, when the live tables have something a swap would
// leave behind with the old tables, or that the rebuilt ones lack; the live tables stay as
// they were.
func TestSwapRefusesWhatItWouldLose(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name         string
		before, then string // DDL run before BeginRebuild, and during the rebuild
		wantErr      string
	}{
		{name: "a view", before: `CREATE VIEW recent AS SELECT * FROM changes`, wantErr: "view recent depends on changes"},
		{name: "a foreign key", before: `CREATE TABLE notes (pipeline_id text REFERENCES pipelines)`, wantErr: "constraint notes_pipeline_id_fkey on table notes depends on pipelines"},
		{name: "a trigger", before: `CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER nothing AFTER INSERT ON incidents FOR EACH ROW EXECUTE FUNCTION nothing()`, wantErr: "trigger nothing on table incidents depends on incidents"},
		{name: "a view made during the rebuild", then: `CREATE VIEW recent AS SELECT * FROM changes`, wantErr: "view recent depends on changes"},
		{name: "an index made during the rebuild", then: `CREATE INDEX deployments_by_status ON deployments (status)`, wantErr: "live deployments: index deployments_by_status"},
		{name: "a column added during the rebuild", then: `ALTER TABLE incidents ADD COLUMN severity int`, wantErr: "severity integer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := openStore(t, 4)
			write(t, db.st, historySets(t, "refuse", 200, 0))
			if c.before != "" {
				exec(t, db.pool, c.before)
				_, err := db.st.BeginRebuild(ctx)
				require.ErrorIs(t, err, store.ErrNotSwappable)
				require.ErrorContains(t, err, c.wantErr)
				return
			}
			rb, err := db.st.BeginRebuild(ctx)
			require.NoError(t, err)
			t.Cleanup(func() { _ = rb.Close(ctx) })
			rebuildFromTable(t, db.st, rb)
			exec(t, db.pool, c.then)
			want := dumpTables(t, db.pool)
			_, _, err = rb.Swap(ctx, 0, decodeNative)
			require.ErrorIs(t, err, store.ErrNotSwappable)
			require.ErrorContains(t, err, c.wantErr)
			require.NoError(t, rb.Close(ctx))
			require.Equal(t, want, dumpTables(t, db.pool), "the live tables are unchanged")
		})
	}
}

// The exchange waits for readers, and readers that come meanwhile wait for it: it gives way
// after a moment and tries again, so a reader that holds a table for a second delays the swap
// without stalling the readers behind it, and one that never lets go makes it fail, naming
// the reader.
func TestSwapGivesWayToReaders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openStore(t, 4)
	write(t, db.st, historySets(t, "busy", 300, 0))

	for _, c := range []struct {
		name    string
		hold    time.Duration
		tries   int
		wantErr error
	}{
		{name: "a reader that lets go after three seconds", hold: 3 * time.Second, tries: 30},
		{name: "a reader that never lets go", hold: time.Minute, tries: 3, wantErr: store.ErrTablesBusy},
	} {
		rb, err := db.st.BeginRebuild(ctx)
		require.NoError(t, err, c.name)
		t.Cleanup(func() { _ = rb.Close(ctx) })
		rebuildFromTable(t, db.st, rb)
		store.SetSwapTries(rb, c.tries)

		// A report that has read deployments and goes on in the same transaction.
		holder, err := db.pool.Begin(ctx)
		require.NoError(t, err)
		// The timer and the test both end it; a transaction is not safe for concurrent use.
		var once sync.Once
		release := func() { once.Do(func() { _ = holder.Rollback(ctx) }) }
		t.Cleanup(release)
		var pid int
		require.NoError(t, holder.QueryRow(ctx, `SELECT pg_backend_pid() FROM deployments LIMIT 1`).Scan(&pid))
		released := time.AfterFunc(c.hold, release)

		swapped := make(chan error, 1)
		go func() {
			_, _, err := rb.Swap(ctx, 0, decodeNative)
			swapped <- err
		}()
		// Dashboards reading all along wait for the swap's tries, never for the holder.
		var slowest time.Duration
		for done := false; !done; {
			select {
			case err = <-swapped:
				done = true
			default:
			}
			began := time.Now()
			count(t, db.pool, `SELECT count(*) FROM deployments`)
			slowest = max(slowest, time.Since(began))
			time.Sleep(10 * time.Millisecond)
		}
		released.Stop()
		release()
		require.NoError(t, rb.Close(ctx))
		t.Logf("%s: the slowest read during the swap took %s", c.name, slowest.Round(time.Millisecond))
		// Not a timing goal: a read queued behind the swap while it waited for the holder
		// would wait as long as the holder holds; the swap's tries give way after 200 ms.
		require.Less(t, slowest, c.hold/2, c.name)
		if c.wantErr == nil {
			require.NoError(t, err, c.name)
			continue
		}
		require.ErrorIs(t, err, c.wantErr, c.name)
		require.ErrorContains(t, err, fmt.Sprintf("pid %d ", pid), c.name)
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr) && pgErr.Code == "55P03", "the last try's error is kept: %v", err)
	}
}

type testStore struct {
	st   *store.Store
	pool *pgxpool.Pool
	url  string
}

// openStore opens a new database's Store, with at most conns connections, and a pool to look
// at it with.
func openStore(t *testing.T, conns int32) testStore {
	dbURL := testenv.Postgres(t)
	st, err := store.Open(context.Background(), dbURL, conns)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return testStore{st: st, pool: pool, url: dbURL}
}

// historySets are the first n events of bench.History(prefix, ...), mapped as the writer maps
// them, with stream sequences after seq.
func historySets(tb testing.TB, prefix string, n int, seq uint64) []fact.Set {
	received := bench.YearEnd
	var sets []fact.Set
	bench.History(prefix, n, func(_ int, raw []byte) {
		if len(sets) == n {
			return
		}
		e, err := event.Decode(raw, received)
		require.NoError(tb, err)
		sets = append(sets, event.Facts(e, raw, received, seq+uint64(len(sets))+1))
	})
	return sets
}

// rebuildFromTable maps every row of st's events table into rb, as pkg/replay's rebuild does,
// and derives what that queued.
func rebuildFromTable(t *testing.T, st *store.Store, rb *store.Rebuild) {
	t.Helper()
	ctx := context.Background()
	_, err := st.ScanEvents(ctx, 100, func(rows []store.RawEvent) error {
		sets, err := decodeNative(rows)
		if err != nil {
			return err
		}
		return rb.Write(ctx, sets)
	})
	require.NoError(t, err)
	_, err = rb.Derive(ctx)
	require.NoError(t, err)
}

// decodeNative maps rows of the events table back to their facts, as the writer mapped them.
func decodeNative(rows []store.RawEvent) ([]fact.Set, error) {
	sets := make([]fact.Set, len(rows))
	for i, r := range rows {
		e, err := event.Decode(r.Payload, r.ReceivedAt)
		if err != nil {
			return nil, fmt.Errorf("the event at stream sequence %d: %w", r.StreamSeq, err)
		}
		sets[i] = event.Facts(e, r.Payload, r.ReceivedAt, r.StreamSeq)
	}
	return sets, nil
}

// write writes sets through the writer's code, in batches of 100.
func write(t *testing.T, st *store.Store, sets []fact.Set) {
	for len(sets) > 0 {
		n := min(100, len(sets))
		require.NoError(t, st.Write(context.Background(), sets[:n]))
		sets = sets[n:]
	}
}

// requireSameReads requires the reads behind the API to answer the same from both stores.
func requireSameReads(t *testing.T, want, got *store.Store) {
	t.Helper()
	require.Equal(t, reads(t, want), reads(t, got))
}

// reads are the answers of the reads behind the API: the DORA metrics, over every pipeline
// and over one, and the lists.
func reads(t *testing.T, st *store.Store) []any {
	t.Helper()
	ctx := context.Background()
	from := bench.YearEnd.AddDate(-1, 0, 0)
	var out []any
	for _, q := range []store.MetricsQuery{
		{From: from, To: bench.YearEnd, Unit: "month"},
		{Pipelines: []string{bench.PipelineName("swap", 1)}, Environment: "production", From: from, To: bench.YearEnd, Unit: "week"},
	} {
		m, err := st.Metrics(ctx, q)
		require.NoError(t, err)
		out = append(out, m)
	}
	events, total, err := st.Events(ctx, store.EventFilter{Page: store.Page{Limit: 50}})
	require.NoError(t, err)
	changes, changeTotal, err := st.Changes(ctx, store.ChangeFilter{Page: store.Page{Limit: 50}})
	require.NoError(t, err)
	pipelines, err := st.Pipelines(ctx)
	require.NoError(t, err)
	open, err := st.OpenIncidents(ctx, "production", bench.YearEnd, 50)
	require.NoError(t, err)
	return append(out, events, total, changes, changeTotal, pipelines, open)
}

// dumpTables is every row of every table of store.StreamTables, as text, in order.
func dumpTables(t *testing.T, pool *pgxpool.Pool) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range store.StreamTables {
		rows, err := pool.Query(context.Background(), `SELECT t::text FROM `+pgx.Identifier{table}.Sanitize()+` t ORDER BY 1`)
		require.NoError(t, err)
		out[table], err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
	}
	return out
}

const (
	indexesQuery = `SELECT format('%s: %s', indexname, indexdef) FROM pg_indexes
WHERE schemaname = current_schema() AND tablename = ANY($1) ORDER BY 1`
	constraintsQuery = `SELECT format('%s: %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid)) FROM pg_constraint
WHERE conrelid::regclass::text = ANY($1) ORDER BY 1`
	grantsQuery = `SELECT format('%s: owner %s', relname, relowner::regrole) FROM pg_class
WHERE relnamespace = current_schema()::regnamespace AND relname = ANY($1)
UNION ALL
SELECT format('%s: %s', relname, a) FROM pg_class, unnest(relacl) a
WHERE relnamespace = current_schema()::regnamespace AND relname = ANY($1) ORDER BY 1`
)

// catalog is what query lists about the tables of store.StreamTables.
func catalog(t *testing.T, pool *pgxpool.Pool, query string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), query, store.StreamTables)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, lines)
	return lines
}

// createRole creates a role named prefix and a number, that logs in with its name as its
// password, dropped when the test ends, and returns its name.
func createRole(t *testing.T, pool *pgxpool.Pool, prefix string) string {
	name := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	exec(t, pool, `CREATE ROLE `+name+` LOGIN PASSWORD '`+name+`'`)
	t.Cleanup(func() {
		exec(t, pool, `DROP OWNED BY `+name)
		exec(t, pool, `DROP ROLE `+name)
	})
	return name
}

// asRole is dbURL with role's login (createRole).
func asRole(t *testing.T, dbURL, role string) string {
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	u.User = url.UserPassword(role, role)
	return u.String()
}

func hasPrivilege(t *testing.T, pool *pgxpool.Pool, role, table string) bool {
	var ok bool
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT has_table_privilege($1, $2, 'SELECT')`, role, table).Scan(&ok))
	return ok
}

func ownerOf(t *testing.T, pool *pgxpool.Pool, table string) string {
	var owner string
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT relowner::regrole::text FROM pg_class WHERE oid = $1::regclass`, table).Scan(&owner))
	return owner
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string) {
	t.Helper()
	_, err := pool.Exec(context.Background(), sql)
	require.NoError(t, err, sql)
}

func count(t *testing.T, pool *pgxpool.Pool, query string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), query).Scan(&n))
	return n
}
