package pgcluster_test

import (
	"context"
	"io"
	"net/url"
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
	var log strings.Builder
	opts.Log = io.MultiWriter(testWriter{t}, &log)
	c := startCluster(t, opts)
	require.NotZero(t, c.Port())
	require.Contains(t, log.String(), "initialising a PostgreSQL cluster")
	require.NotContains(t, log.String(), "trusted every local connection", "a new cluster trusted no one")

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

// passwordFile is where the cluster keeps the superuser's password.
func passwordFile(c *pgcluster.Cluster) string {
	return filepath.Join(c.DataDir(), "devopstic-password")
}

// withoutPassword is dbURL with its password taken out.
func withoutPassword(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	u.User = url.User(u.User.Username())
	return u.String()
}

// socketURL reaches database over the unix socket in the data directory.
func socketURL(c *pgcluster.Cluster, database, password string) string {
	q := url.Values{"host": {c.DataDir()}, "port": {strconv.Itoa(c.Port())}, "sslmode": {"disable"}}
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", password), Path: "/" + database, RawQuery: q.Encode()}
	if password == "" {
		u.User = url.User("postgres")
	}
	return u.String()
}

func tryConnect(dbURL string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// requireLocked checks what a local user who is not the cluster's owner can do: nothing
// without the password, over TCP or the socket; and that the password works and is kept
// where only the owner reads it.
func requireLocked(t *testing.T, c *pgcluster.Cluster, database string) {
	t.Helper()
	require.Error(t, tryConnect(withoutPassword(t, c.URL(database))), "TCP without a password")
	require.Error(t, tryConnect(socketURL(c, database, "")), "the socket without a password")
	require.Error(t, tryConnect(socketURL(c, database, "not-the-password")), "the socket with a wrong password")

	u, err := url.Parse(c.URL(database))
	require.NoError(t, err)
	password, ok := u.User.Password()
	require.True(t, ok, "the URL carries the password")
	wrong := *u
	wrong.User = url.UserPassword(u.User.Username(), "not-the-password")
	require.Error(t, tryConnect(wrong.String()), "TCP with a wrong password")

	require.NoError(t, tryConnect(c.URL(database)), "TCP with the password")
	require.NoError(t, tryConnect(socketURL(c, database, password)), "the socket with the password")

	kept, err := os.ReadFile(passwordFile(c))
	require.NoError(t, err)
	require.Equal(t, password, strings.TrimSpace(string(kept)))
	for path, mode := range map[string]os.FileMode{
		c.DataDir():     0o700,
		passwordFile(c): 0o600,
		filepath.Join(c.DataDir(), "pg_hba.conf"):    0o600,
		filepath.Join(c.DataDir(), "devopstic.conf"): 0o600,
	} {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, mode, fi.Mode().Perm(), path)
	}

	ctx := context.Background()
	conn := connect(t, c.URL(database))
	var listen string
	require.NoError(t, conn.QueryRow(ctx, "SHOW listen_addresses").Scan(&listen))
	require.Equal(t, "127.0.0.1", listen)
	var others int
	require.NoError(t, conn.QueryRow(ctx,
		"SELECT count(*) FROM pg_hba_file_rules WHERE auth_method <> 'scram-sha-256' OR error IS NOT NULL").Scan(&others))
	require.Zero(t, others, "every pg_hba.conf rule asks for the password")
	var verifier string
	require.NoError(t, conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").Scan(&verifier))
	require.True(t, strings.HasPrefix(verifier, "SCRAM-SHA-256$"), "the password is kept as a SCRAM verifier")
}

func TestConnectionsNeedThePassword(t *testing.T) {
	t.Parallel()
	opts := testOptions(t)
	c := startCluster(t, opts)
	requireLocked(t, c, "postgres")

	// The same password after a restart.
	before := c.URL("postgres")
	require.NoError(t, c.Stop())
	again, err := pgcluster.Start(context.Background(), opts)
	require.NoError(t, err)
	require.Equal(t, before, again.URL("postgres"))
	requireLocked(t, again, "postgres")
}

// oldTrustHBA is the pg_hba.conf of `initdb --auth=trust`, which DevOpstic used before its
// clusters had a password (its comments left out).
const oldTrustHBA = `local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
host    replication     all             ::1/128                 trust
`

// makeTrusting turns the cluster c, running, back into what an older DevOpstic left: every
// local connection trusted, the superuser without a password, no password file.
func makeTrusting(t *testing.T, c *pgcluster.Cluster) {
	t.Helper()
	conn := connect(t, c.URL("postgres"))
	_, err := conn.Exec(context.Background(), "ALTER ROLE postgres PASSWORD NULL")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(c.DataDir(), "pg_hba.conf"), []byte(oldTrustHBA), 0o600))
	_, err = conn.Exec(context.Background(), "SELECT pg_reload_conf()")
	require.NoError(t, err)
	require.NoError(t, conn.Close(context.Background()))
	if err := os.Remove(passwordFile(c)); err != nil {
		require.ErrorIs(t, err, os.ErrNotExist)
	}
	require.NoError(t, tryConnect(withoutPassword(t, c.URL("postgres"))), "trusted again")
}

func TestStartUpgradesATrustingCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opts := testOptions(t)
	c := startCluster(t, opts)
	require.NoError(t, c.CreateDatabase(ctx, "app", ""))
	_, err := connect(t, c.URL("app")).Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
	require.NoError(t, err)

	t.Run("stopped", func(t *testing.T) {
		makeTrusting(t, c)
		require.NoError(t, c.Stop())
		var log strings.Builder
		logged := opts
		logged.Log = io.MultiWriter(testWriter{t}, &log)
		again, err := pgcluster.Start(ctx, logged)
		require.NoError(t, err)
		require.Contains(t, log.String(), "trusted every local connection", "the operator is told")
		requireLocked(t, again, "app")
		var v int
		require.NoError(t, connect(t, again.URL("app")).QueryRow(ctx, "SELECT v FROM kept").Scan(&v))
		require.Equal(t, 42, v, "the data is kept")
		c = again
	})

	// A server an older version started and left running is upgraded where it runs, and left
	// running.
	t.Run("running", func(t *testing.T) {
		makeTrusting(t, c)
		reused, err := pgcluster.Start(ctx, opts)
		require.NoError(t, err)
		requireLocked(t, reused, "app")
		require.NoError(t, reused.StopIfStarted())
		require.NoError(t, tryConnect(reused.URL("app")), "still running")
		c = reused
	})

	// Only the lost password would let us in to set a new one while it runs; once stopped,
	// it gets a new one.
	t.Run("password file lost", func(t *testing.T) {
		require.NoError(t, os.Remove(passwordFile(c)))
		_, err := pgcluster.Start(ctx, opts)
		require.ErrorContains(t, err, "pg_ctl stop")
		require.NoFileExists(t, passwordFile(c), "no password is kept that was never set")
		require.NoError(t, c.Stop())
		again, err := pgcluster.Start(ctx, opts)
		require.NoError(t, err)
		requireLocked(t, again, "app")
	})
}
