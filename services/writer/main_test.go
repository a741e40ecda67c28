package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/testenv"
)

// TestMain doubles as the writer binary: the kill test re-runs this test binary with
// DEVOPSTIC_TEST_RUN_WRITER=1 to get a real writer process it can SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("DEVOPSTIC_TEST_RUN_WRITER") == "1" {
		main()
		os.Exit(0)
	}
	testenv.Main(m)
}

func TestWriterKilledMidStreamLosesAndDoublesNothing(t *testing.T) {
	dbURL := testenv.Postgres(t)
	n := testenv.StartNATS(t)
	ctx := context.Background()

	// A backlog in the stream (which testenv set up), as the ingest would have left it.
	const commits, deploys = 15000, 4000
	nc, err := stream.ConnectAs(n.URL, "test", n.Login(stream.RoleIngest))
	require.NoError(t, err)
	defer nc.Close()
	pub, err := stream.NewPublisher(nc, 10*time.Second)
	require.NoError(t, err)
	received := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var batch []stream.Message
	add := func(raw string) {
		e, err := event.Decode([]byte(raw), received)
		require.NoError(t, err)
		batch = append(batch, stream.Message{Subject: stream.Subject(event.Source, e.Type), ID: e.ID, Data: []byte(raw), ReceivedAt: received})
		if len(batch) == 1000 {
			require.NoError(t, pub.Publish(ctx, batch))
			batch = nil
		}
	}
	for i := range commits {
		add(fmt.Sprintf(`{"type":"commit","pipeline_id":"p%d","commit_id":"c%d","timestamp":%d}`, i%10, i, 1790000000+i))
	}
	for i := range deploys {
		// ships two commits of its own pipeline: c3i and c3i+10
		add(fmt.Sprintf(`{"type":"deploy","pipeline_id":"p%d","environment":"production","commit_id":"c%d","commits":["c%d"],"timestamp":%d}`,
			(3*i)%10, 3*i, 3*i+10, 1795000000+i))
	}
	require.NoError(t, pub.Publish(ctx, batch))

	db, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close()
	count := func() int {
		var c int
		require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&c))
		return c
	}
	waitFor := func(cond func(int) bool, what string) {
		deadline := time.Now().Add(2 * time.Minute)
		for !cond(count()) {
			require.True(t, time.Now().Before(deadline), "timed out waiting for %s (at %d rows)", what, count())
			time.Sleep(5 * time.Millisecond)
		}
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(append(os.Environ(), n.Env(stream.RoleWriter)...),
			"DEVOPSTIC_TEST_RUN_WRITER=1",
			"DEVOPSTIC_DATABASE_URL="+dbURL,
			"DEVOPSTIC_WRITER_BATCH_SIZE=100",
			// A killed writer's messages come back after AckWait: keep the test short.
			"DEVOPSTIC_WRITER_ACK_WAIT=2s",
			"DEVOPSTIC_LOG_LEVEL=warn",
		)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		require.NoError(t, cmd.Start())
		return cmd
	}
	kill := func(cmd *exec.Cmd) {
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
	}

	total := commits + deploys
	began := time.Now()
	w := start()
	waitFor(func(c int) bool { return c >= total/5 }, "a fifth of the backlog")
	kill(w)
	first := count()
	w = start()
	waitFor(func(c int) bool { return c >= first+total/5 }, "another fifth")
	kill(w)
	second := count()
	w = start()
	waitFor(func(c int) bool { return c == total }, "the whole backlog")

	// Let the last writer settle every message, then stop it the polite way.
	admin, err := stream.ConnectAs(n.URL, "test-admin", n.Login(stream.RoleAdmin))
	require.NoError(t, err)
	defer admin.Close()
	js, err := jetstream.New(admin)
	require.NoError(t, err)
	cons, err := js.Consumer(ctx, stream.StreamName, stream.ConsumerName)
	require.NoError(t, err)
	deadline := time.Now().Add(time.Minute)
	for {
		info, err := cons.Info(ctx)
		require.NoError(t, err)
		if info.NumPending == 0 && info.NumAckPending == 0 {
			t.Logf("writer killed at %d and %d of %d rows; all written in %s",
				first, second, total, time.Since(began).Round(time.Millisecond))
			break
		}
		require.True(t, time.Now().Before(deadline), "stream not drained: %+v", info)
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, w.Process.Signal(syscall.SIGTERM))
	require.NoError(t, w.Wait())

	var events, changes, deployments, shipped, dead int
	require.NoError(t, db.QueryRow(ctx, `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM changes),
	    (SELECT count(*) FROM deployments), (SELECT count(*) FROM deployment_commits), (SELECT count(*) FROM dead_letters)`).
		Scan(&events, &changes, &deployments, &shipped, &dead))
	require.Equal(t, total, events, "events lost or doubled")
	require.Equal(t, commits, changes)
	require.Equal(t, deploys, deployments)
	require.Equal(t, 2*deploys, shipped)
	require.Zero(t, dead)
}

// A writer whose NATS credentials are refused stops at once and says what to set, rather than
// wait for a stream it will never see.
func TestWriterWithRefusedCredentialsStops(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	for _, env := range [][]string{
		{"DEVOPSTIC_NATS_USER=devopstic-writer", "DEVOPSTIC_NATS_PASSWORD=not-the-password"},
		{}, // none at all
	} {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(append(os.Environ(), env...),
			"DEVOPSTIC_TEST_RUN_WRITER=1",
			"DEVOPSTIC_DATABASE_URL=postgres://nobody@127.0.0.1:1/none",
			"DEVOPSTIC_NATS_URL="+n.URL,
		)
		out, err := cmd.CombinedOutput()
		require.Error(t, err, "%s", out)
		require.Contains(t, string(out), "NATS refused the credentials")
		require.Contains(t, string(out), "set DEVOPSTIC_NATS_USER and DEVOPSTIC_NATS_PASSWORD")
		if len(env) > 0 {
			require.Contains(t, string(out), "of user devopstic-writer")
		}
	}
}
