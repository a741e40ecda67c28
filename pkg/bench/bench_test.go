package bench_test

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/bench"
	"github.com/devopstic/devopstic/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestTinyRun keeps make bench working: a run at the smallest scale, against the real
// services built from services/, a real Postgres and a real NATS server, must finish and
// print every row with a measurement. It asserts nothing about speed; the run itself checks
// that no step loses or doubles an event (the writer's, the replay's and the rebuild's counts).
func TestTinyRun(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "../../services/ingest", "../../services/writer")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	var progress bytes.Buffer
	n := testenv.StartNATS(t)
	dbURL := testenv.Postgres(t)
	rows, err := bench.Run(context.Background(), bench.Config{
		Scale:         0.0001,
		IngestBin:     filepath.Join(bin, "ingest"),
		WriterBin:     filepath.Join(bin, "writer"),
		DatabaseURL:   dbURL,
		NATSURL:       n.URL,
		NATSPasswords: n.Passwords,
		Progress:      &progress,
	})
	require.NoError(t, err, "progress:\n%s", progress.String())

	var table bytes.Buffer
	bench.Print(&table, rows, 0.0001, 2)
	t.Log(table.String())
	for _, figure := range []string{
		"ceiling: JetStream publish, synchronous, 1 publisher",
		"ceiling: JetStream publish, synchronous, 16 publishers",
		"ceiling: JetStream publish, synchronous, 64 publishers",
		"ceiling: JetStream publish, asynchronous",
		"ceiling: HTTP POST answered 202 by fiber doing nothing (in the bench process), 1 client",
		"ceiling: HTTP POST answered 202 by fiber doing nothing (in the bench process), 16 clients",
		"ceiling: HTTP POST answered 202 by fiber doing nothing (in the bench process), 64 clients",
		"ceiling: Postgres COPY",
		"ingest: POST /events, single events, 1 client",
		"ingest: POST /events, single events, 16 clients",
		"ingest: POST /events, single events, 64 clients",
		"ingest: POST /events, JSON arrays of 100",
		"ingest: POST /events, NDJSON of 100",
		"ingest: POST /events, JSON arrays of 1,000",
		"ingest: POST /events, NDJSON of 1,000",
		"ingest: POST /github/events",
		"writer: backlog of",
		"replay: the stream's backlog of",
		"events from the events table, every table recomputed and swapped in",
		"rebuild: the writers held off during the swap",
		"end to end: 2000 events/s",
		"events: one pipeline, 90 days (",
		"events: one pipeline, 90 days, interval=week",
		"events: all pipelines, 90 days (",
		"events: all pipelines, 90 days, interval=week",
		"writer: the same backlog with",
		"memory: ingest peak RSS",
		"memory: writer peak RSS",
	} {
		require.Contains(t, table.String(), figure, "row %q is missing", figure)
	}
	require.Len(t, rows, 28)
	// The replay step's second database is gone once the run is over.
	conn, err := pgx.Connect(context.Background(), dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var left int
	require.NoError(t, conn.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_database WHERE datname = current_database() || '_replay'`).Scan(&left))
	require.Zero(t, left, "the replayed database was not dropped")
	for _, r := range rows {
		require.NotEmpty(t, r.Measured, "row %q has no measurement", r.Figure)
		require.NotContains(t, r.Measured, "NaN", r.Figure)
	}
}
