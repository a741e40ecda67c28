package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// A batch merges the rows it repeats in Go before its one statement per table; the result
// must be what the upserts give when every event is its own transaction, in any order. The
// events repeat deployment attempts with equal times (the tie-break falls to failure first,
// then the event id, compared byte-wise: ids that sort differently under a natural-language
// collation), reopen and re-resolve incidents, and repeat changes.
func TestBatchMergesAsSeparateWrites(t *testing.T) {
	t.Parallel()
	at := int64(1795600000)
	var raws []string
	for _, id := range []string{"a-1", "A-1", "a_2", "ab", "Z", "b"} {
		for _, status := range []string{"success", "failure"} {
			raws = append(raws, fmt.Sprintf(`{"id":"%s-%s","type":"deploy","pipeline_id":"api","environment":"production","deployment_id":"run-1","commit_id":"c-%s","status":%q,"timestamp":%d}`,
				id, status, id, status, at))
		}
	}
	raws = append(raws,
		fmt.Sprintf(`{"id":"late","type":"deploy","pipeline_id":"api","environment":"production","deployment_id":"run-2","commit_id":"c1","status":"success","timestamp":%d}`, at+60),
		fmt.Sprintf(`{"id":"early","type":"deploy","pipeline_id":"api","environment":"production","deployment_id":"run-2","commit_id":"c2","status":"failure","timestamp":%d}`, at+30),
		fmt.Sprintf(`{"id":"i-open-1","type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i1","status":"failure","deployment_id":"run-2","timestamp":%d}`, at+100),
		fmt.Sprintf(`{"id":"i-open-2","type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i1","status":"failure","deployment_id":"run-1","timestamp":%d}`, at+90),
		fmt.Sprintf(`{"id":"i-res-1","type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i1","status":"success","timestamp":%d}`, at+200),
		fmt.Sprintf(`{"id":"i-res-2","type":"incident_status_change","pipeline_id":"api","environment":"production","incident_id":"i1","status":"success","timestamp":%d}`, at+300),
		fmt.Sprintf(`{"id":"ch-1","type":"commit","pipeline_id":"api","commit_id":"c1","timestamp":%d}`, at-500),
		fmt.Sprintf(`{"id":"ch-2","type":"submit","pipeline_id":"api","commit_id":"c1","pull_request_id":9,"timestamp":%d}`, at-400),
		fmt.Sprintf(`{"id":"ch-3","type":"submit","pipeline_id":"api","commit_id":"c1","pull_request_id":7,"timestamp":%d}`, at-450),
	)
	received := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	sets := make([]fact.Set, len(raws))
	for i, raw := range raws {
		e, err := event.Decode([]byte(raw), received)
		require.NoError(t, err, raw)
		sets[i] = event.Facts(e, []byte(raw), received, uint64(i+1))
	}

	ctx := context.Background()
	write := func(batches [][]fact.Set) map[string][]string {
		dbURL := testenv.Postgres(t)
		st, err := store.Open(ctx, dbURL, 2)
		require.NoError(t, err)
		defer st.Close()
		for _, b := range batches {
			require.NoError(t, st.Write(ctx, b))
		}
		return dump(t, dbURL)
	}
	oneBatch := write([][]fact.Set{sets})
	require.Contains(t, oneBatch["deployments"], "(api,production,run-1,failure,c-b)", "byte order: b > a_2 > ab > a-1 > Z > A-1")
	require.Contains(t, oneBatch["deployments"], "(api,production,run-2,success,c1)")
	// Opened by the earliest failure (at+90, blaming run-1), resolved by the latest success (at+300).
	require.Equal(t, []string{`(i1,"2026-11-25 09:48:10+00","2026-11-25 09:51:40+00",run-1)`}, oneBatch["incidents"])

	for seed := range uint64(3) {
		shuffled := append([]fact.Set(nil), sets...)
		rand.New(rand.NewPCG(seed, 7)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		var each [][]fact.Set
		for _, s := range shuffled {
			each = append(each, []fact.Set{s})
		}
		require.Equal(t, oneBatch, write(each), "seed %d", seed)
	}
}

func dump(t *testing.T, dbURL string) map[string][]string {
	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	defer pool.Close()
	out := map[string][]string{}
	for table, q := range map[string]string{
		"deployments": `SELECT (pipeline_id, environment, deployment_key, status, commit_id)::text FROM deployments ORDER BY 1`,
		"incidents":   `SELECT (incident_id, opened_at, last_resolved_at, cause_deployment_id)::text FROM incidents ORDER BY 1`,
		"changes":     `SELECT (pipeline_id, commit_id, pull_request_id, committed_at, submitted_at)::text FROM changes ORDER BY 1`,
		"shipped":     `SELECT (deployment_key, commit_id)::text FROM deployment_commits ORDER BY 1`,
	} {
		rows, err := pool.Query(context.Background(), q)
		require.NoError(t, err)
		for rows.Next() {
			var line string
			require.NoError(t, rows.Scan(&line))
			out[table] = append(out[table], line)
		}
		require.NoError(t, rows.Err())
	}
	return out
}
