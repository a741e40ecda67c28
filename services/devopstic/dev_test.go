package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/pgcluster"
)

// init turns this test binary into the devopstic command when DEVOPSTIC_TEST_RUN_MAIN is 1, so
// that the dev tests run the real `devopstic dev` (its environment, its signals, its exit
// status) without building a binary. It runs before TestMain, which other tests own.
func init() {
	if os.Getenv("DEVOPSTIC_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
}

// devProcess is `devopstic dev` running as a process of its own.
type devProcess struct {
	cmd     *exec.Cmd
	output  *lockedBuffer // stdout and stderr
	running chan string   // receives the URL of the welcome message
	exited  chan struct{} // closed once the process has exited; then err is set
	err     error
}

var welcomeLine = regexp.MustCompile(`DevOpstic is running at (\S+)`)

// startDev runs `devopstic dev` with env added to this process's environment minus its
// DEVOPSTIC_ variables (DEVOPSTIC_PG_BINDIR kept), and with an embedded NATS port of its own.
// The process is interrupted, and its Postgres stopped, when the test ends.
func startDev(t *testing.T, env map[string]string) *devProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "dev")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEVOPSTIC_") || strings.HasPrefix(kv, "DEVOPSTIC_PG_BINDIR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "DEVOPSTIC_TEST_RUN_MAIN=1", "DEVOPSTIC_EMBEDDED_NATS_ADDR="+freeAddr(t))
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &devProcess{cmd: cmd, output: &lockedBuffer{}, running: make(chan string, 1), exited: make(chan struct{})}
	cmd.Stderr = p.output
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(p.output, sc.Text())
			if m := welcomeLine.FindStringSubmatch(sc.Text()); m != nil {
				p.running <- m[1]
			}
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.interrupt(t)
		if t.Failed() {
			t.Logf("devopstic dev said:\n%s", p.output)
		}
	})
	if dir := env["DEVOPSTIC_DATA_DIR"]; dir != "" {
		t.Cleanup(func() { stopLeftPostgres(t, filepath.Join(dir, "postgres")) })
	}
	return p
}

// waitRunning returns the URL the process serves at, failing the test if it exits first.
func (p *devProcess) waitRunning(t *testing.T) string {
	t.Helper()
	select {
	case u := <-p.running:
		return u
	case <-p.exited:
		t.Fatalf("devopstic dev exited (%v) instead of serving:\n%s", p.err, p.output)
	case <-time.After(2 * time.Minute):
		t.Fatalf("devopstic dev neither served nor exited within 2 minutes:\n%s", p.output)
	}
	return ""
}

// waitExit waits until the process exits, failing the test if it starts serving instead.
func (p *devProcess) waitExit(t *testing.T) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case u := <-p.running:
		t.Fatalf("devopstic dev started serving at %s instead of refusing to", u)
	case <-time.After(2 * time.Minute):
		t.Fatalf("devopstic dev did not exit within 2 minutes:\n%s", p.output)
	}
	return nil
}

// interrupt stops the process as Ctrl-C does and waits for it to exit.
func (p *devProcess) interrupt(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		t.Errorf("devopstic dev did not stop within a minute of SIGINT; killing it")
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// stopLeftPostgres stops a server the process left running in dataDir (after a failure).
func stopLeftPostgres(t *testing.T, dataDir string) {
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); err != nil {
		return
	}
	c, err := pgcluster.Start(context.Background(), pgcluster.Options{BinDir: pgBinDir(t), DataDir: dataDir})
	if err == nil {
		err = c.Stop()
	}
	if err != nil {
		t.Logf("stop the PostgreSQL left in %s: %v", dataDir, err)
	}
}

func pgBinDir(t *testing.T) string {
	t.Helper()
	dir, err := pgcluster.FindBinDir(os.Getenv("DEVOPSTIC_PG_BINDIR"))
	require.NoError(t, err)
	return dir
}

// freeAddr is a loopback address with a port nothing listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// devDataDir is a data directory the postgres user can enter (the server runs as that user
// when the tests run as root), removed when the test ends.
func devDataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "devopstic-dev-test-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { require.NoError(t, os.RemoveAll(dir)) })
	return dir
}

// Issue 11, item 3: admin/admin must never be reachable from beyond this machine.
func TestDevRefusesTheDefaultLoginBeyondLoopback(t *testing.T) {
	t.Parallel()
	_, port, err := net.SplitHostPort(freeAddr(t))
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"every IPv4 address", map[string]string{"DEVOPSTIC_HTTP_ADDR": "0.0.0.0:" + port}},
		{"every IPv6 address", map[string]string{"DEVOPSTIC_HTTP_ADDR": "[::]:" + port}},
		{"an empty host", map[string]string{"DEVOPSTIC_HTTP_ADDR": ":" + port}},
		{"a host name", map[string]string{"DEVOPSTIC_HTTP_ADDR": "devopstic.example:" + port}},
		{"a non-loopback address", map[string]string{"DEVOPSTIC_HTTP_ADDR": "192.0.2.10:" + port}},
		{"loopback behind a proxy", map[string]string{"DEVOPSTIC_HTTP_ADDR": "127.0.0.1:" + port,
			"DEVOPSTIC_PROXY_HEADER": "X-Real-IP", "DEVOPSTIC_TRUSTED_PROXIES": "127.0.0.1"}},
		{"only a username", map[string]string{"DEVOPSTIC_HTTP_ADDR": "0.0.0.0:" + port, "DEVOPSTIC_USERNAME": "ops"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dataDir := devDataDir(t)
			tc.env["DEVOPSTIC_DATA_DIR"] = dataDir
			p := startDev(t, tc.env)
			err := p.waitExit(t)
			require.Error(t, err, "%s", p.output)
			require.Contains(t, p.output.String(), "DEVOPSTIC_USERNAME")
			require.Contains(t, p.output.String(), "DEVOPSTIC_PASSWORD")
			require.NoDirExists(t, filepath.Join(dataDir, "postgres"), "it refuses before starting anything")
		})
	}
}

// Issue 11, item 4: the Postgres of `make run` takes connections with its password only, and
// a cluster an older version left trusting every local connection is locked on the next run,
// its data kept. Item 3's other side: on loopback the default login works.
func TestDevLocksItsPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dataDir := devDataDir(t)
	pgDir := filepath.Join(dataDir, "postgres")

	// The cluster as an older `make run` left it.
	old, err := pgcluster.Start(ctx, pgcluster.Options{BinDir: pgBinDir(t), DataDir: pgDir})
	require.NoError(t, err)
	require.NoError(t, old.CreateDatabase(ctx, "devopstic", ""))
	conn, err := pgx.Connect(ctx, old.URL("devopstic"))
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42); ALTER ROLE postgres PASSWORD NULL")
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))
	require.NoError(t, old.Stop())
	require.NoError(t, os.WriteFile(filepath.Join(pgDir, "pg_hba.conf"),
		[]byte("local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"), 0o600))
	if err := os.Remove(filepath.Join(pgDir, "devopstic-password")); err != nil {
		require.ErrorIs(t, err, os.ErrNotExist)
	}

	p := startDev(t, map[string]string{"DEVOPSTIC_DATA_DIR": dataDir, "DEVOPSTIC_HTTP_ADDR": freeAddr(t)})
	base := p.waitRunning(t)
	resp, err := http.Post(base+"/tokens", "application/json", strings.NewReader(`{"username":"admin","password":"admin"}`))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, "admin/admin on loopback")

	// The server dev runs, as the operating commands find it.
	running, err := pgcluster.Start(ctx, pgcluster.Options{BinDir: pgBinDir(t), DataDir: pgDir})
	require.NoError(t, err)
	dbURL := running.URL("devopstic")
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	noPassword := *u
	noPassword.User = url.User(u.User.Username())
	require.Error(t, ping(ctx, noPassword.String()), "TCP without the password")
	socket := fmt.Sprintf("host=%s port=%d user=postgres dbname=devopstic sslmode=disable", pgDir, running.Port())
	require.Error(t, ping(ctx, socket), "the socket without the password")

	password, ok := u.User.Password()
	require.True(t, ok, "the URL carries the password")
	kept, err := os.ReadFile(filepath.Join(pgDir, "devopstic-password"))
	require.NoError(t, err)
	require.Equal(t, password, strings.TrimSpace(string(kept)))
	require.NoError(t, ping(ctx, socket+" password="+password), "the socket with the password")
	conn, err = pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	var v int
	require.NoError(t, conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v))
	require.Equal(t, 42, v, "the data of the old cluster is kept")
	require.NoError(t, conn.Close(ctx))

	for path, mode := range map[string]os.FileMode{
		pgDir: 0o700,
		filepath.Join(pgDir, "devopstic-password"): 0o600,
		filepath.Join(pgDir, "pg_hba.conf"):        0o600,
	} {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, mode, fi.Mode().Perm(), path)
	}

	p.interrupt(t)
	require.NoError(t, p.err, "a clean stop")
	require.NoFileExists(t, filepath.Join(pgDir, "postmaster.pid"), "Ctrl-C stops the Postgres it started")
}

func ping(ctx context.Context, connString string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

func TestLoopbackOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr, proxyHeader string
		loopback          bool
	}{
		{"127.0.0.1:8080", "", true},
		{"127.8.9.10:8080", "", true},
		{"[::1]:8080", "", true},
		{"localhost:8080", "", true},
		{"LocalHost:8080", "", true},
		{"0.0.0.0:8080", "", false},
		{"[::]:8080", "", false},
		{":8080", "", false},
		{"devopstic.example:8080", "", false},
		{"localhost.example:8080", "", false},
		{"192.0.2.10:8080", "", false},
		{"[2001:db8::1]:8080", "", false},
		{"128.0.0.1:8080", "", false},
		{"127.0.0.1:8080", "X-Real-IP", false},
	} {
		err := loopbackOnly(config.HTTP{Addr: tc.addr, ProxyHeader: tc.proxyHeader})
		if tc.loopback {
			require.NoError(t, err, tc.addr)
			continue
		}
		require.Error(t, err, tc.addr)
		require.ErrorContains(t, err, "DEVOPSTIC_USERNAME and DEVOPSTIC_PASSWORD", tc.addr)
	}
}
