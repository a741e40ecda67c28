package pgcluster_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/pgcluster"
)

// testOptions returns Options for a fresh cluster. The data directory is not
// under t.TempDir(), whose parent is private to the test's user and so cannot
// be entered by the postgres user the server runs as when tests run as root.
func testOptions(t *testing.T) pgcluster.Options {
	t.Helper()
	binDir, err := pgcluster.FindBinDir(os.Getenv("DEVOPSTIC_PG_BINDIR"))
	require.NoError(t, err)
	dir, err := os.MkdirTemp("", "pgcluster-test-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { require.NoError(t, os.RemoveAll(dir)) })
	return pgcluster.Options{
		BinDir:  binDir,
		DataDir: filepath.Join(dir, "pg"),
		Fast:    true,
		Log:     testWriter{t},
	}
}

// startCluster starts a cluster and stops it when the test ends; cleanups
// run last-in first-out, so the server is down before its directory goes.
func startCluster(t *testing.T, opts pgcluster.Options) *pgcluster.Cluster {
	t.Helper()
	c, err := pgcluster.Start(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Stop()) })
	return c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func TestFindBinDir(t *testing.T) {
	t.Parallel()

	dir, err := pgcluster.FindBinDir("")
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(dir, "initdb"))

	empty := t.TempDir()
	_, err = pgcluster.FindBinDir(empty)
	require.ErrorContains(t, err, "initdb")
	require.ErrorContains(t, err, empty)
}

func TestStartCreateDatabaseAndRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opts := testOptions(t)
	c := startCluster(t, opts)
	require.NotZero(t, c.Port())

	require.NoError(t, c.CreateDatabase(ctx, "app test", ""))
	require.NoError(t, c.CreateDatabase(ctx, "app test", ""), "creating an existing database is a no-op")
	require.NoError(t, c.CreateDatabase(ctx, "copy", "app test"))

	conn := connect(t, c.URL("app test"))
	var one int
	require.NoError(t, conn.QueryRow(ctx, "SELECT 1").Scan(&one))
	require.Equal(t, 1, one)
	_, err := conn.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))

	require.NoError(t, c.Stop())
	require.NoError(t, c.Stop(), "stopping a stopped server is a no-op")

	again, err := pgcluster.Start(ctx, opts)
	require.NoError(t, err)
	require.Equal(t, c.Port(), again.Port(), "the port is remembered in the data directory")
	var v int
	require.NoError(t, connect(t, again.URL("app test")).QueryRow(ctx, "SELECT v FROM kept").Scan(&v))
	require.Equal(t, 42, v)

	require.NoError(t, again.Stop())
	require.NoError(t, c.StartAgain(ctx))
	require.NoError(t, connect(t, c.URL("copy")).Ping(ctx))
}

func TestStartReusesRunningServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opts := testOptions(t)
	first := startCluster(t, opts)

	second, err := pgcluster.Start(ctx, opts)
	require.NoError(t, err)
	require.Equal(t, first.Port(), second.Port())
	require.NoError(t, second.StopIfStarted())
	require.NoError(t, connect(t, first.URL("postgres")).Ping(ctx), "StopIfStarted left the server it did not start running")

	opts.Port = first.Port() + 1
	_, err = pgcluster.Start(ctx, opts)
	require.ErrorContains(t, err, "already running on port "+strconv.Itoa(first.Port()))
}

func TestStartAfterKilledServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opts := testOptions(t)
	c := startCluster(t, opts)

	pidFile := filepath.Join(c.DataDir(), "postmaster.pid")
	data, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.SplitN(string(data), "\n", 2)[0])
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	require.Eventually(t, func() bool { return !isAlive(pid) }, 10*time.Second, 20*time.Millisecond)
	require.FileExists(t, pidFile, "a killed server leaves its pid file behind")

	require.NoError(t, c.StartAgain(ctx))
	require.NoError(t, connect(t, c.URL("postgres")).Ping(ctx))
}

// isAlive treats a zombie as dead: nothing may reap it where the init
// process does not.
func isAlive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i+2 < len(s) && s[i+2] != 'Z'
}
