// Package pgcluster runs a PostgreSQL server cluster on this machine from the
// installed server binaries, so that `make run` and the tests need neither a
// database service set up by hand nor a container runtime. `make run` keeps a
// cluster under .data/postgres and reuses it on the next run; each test package
// starts its own in a temporary directory.
//
// The server listens only on 127.0.0.1 (what the services connect to) and
// keeps its unix socket inside the data directory (mode 0700), so it never
// touches /var/run/postgresql or a system-wide cluster. Every connection, on
// either, must prove the superuser's password (SCRAM-SHA-256): another user of
// the machine could otherwise connect as the superuser and run commands as the
// server's OS user (COPY ... TO PROGRAM). The password is generated on the
// first start and kept in the data directory, readable by its owner only.
package pgcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// superuser is both the role initdb creates and the OS account the
	// server runs under when we are root, matching what distributions do.
	superuser = "postgres"

	// confName is included from postgresql.conf and rewritten on every
	// start, so changed Options (port, Fast, a moved directory) take effect
	// without editing the file initdb wrote.
	confName = "devopstic.conf"
	logName  = "server.log"

	// passwordFileName is the file, in the data directory, that keeps the superuser's
	// password, made on the first start.
	passwordFileName = "devopstic-password"
	hbaName          = "pg_hba.conf"

	readyTimeout = 30 * time.Second
	logTailLines = 20

	// maxSocketPath is the room in sockaddr_un.sun_path (104 on macOS,
	// 108 on Linux) minus the terminating NUL.
	maxSocketPath = 103
)

// hbaConf is the whole of pg_hba.conf: the password on the socket and on
// 127.0.0.1, nothing for ::1 or replication. It is rewritten on every start, so
// that a cluster an older DevOpstic made with `initdb --auth=trust` is locked
// on its next start.
const hbaConf = `# Written by DevOpstic's pgcluster on every start; edits are lost.
# Every connection proves the password kept in ` + passwordFileName + `.
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
`

// installHint tells a developer without PostgreSQL what to do about it.
const installHint = "install the PostgreSQL server: `apt-get install postgresql` on Debian/Ubuntu, " +
	"`brew install postgresql@15` on macOS; or set DEVOPSTIC_PG_BINDIR to the directory holding initdb"

// serverBinaries must all live in the directory FindBinDir returns.
var serverBinaries = []string{"initdb", "pg_ctl", "postgres"}

// FindBinDir finds the directory holding initdb, pg_ctl and postgres. It
// tries, in order: override (the value of $DEVOPSTIC_PG_BINDIR, "" when
// unset), `pg_config --bindir`, the directory of initdb on PATH (symlinks
// resolved), and the newest /usr/lib/postgresql/*/bin or Homebrew
// postgresql@* keg. An override that lacks a binary is an error rather than a
// reason to look elsewhere, because the user asked for it explicitly.
func FindBinDir(override string) (string, error) {
	if override != "" {
		dir, err := filepath.Abs(override)
		if err != nil {
			return "", fmt.Errorf("DEVOPSTIC_PG_BINDIR=%s: %w", override, err)
		}
		if err := checkBinDir(dir); err != nil {
			return "", fmt.Errorf("DEVOPSTIC_PG_BINDIR=%s: %w", override, err)
		}
		return dir, nil
	}
	candidates := []string{pgConfigBinDir(), pathBinDir()}
	candidates = append(candidates, knownBinDirs()...)
	for _, dir := range candidates {
		if dir != "" && checkBinDir(dir) == nil {
			return dir, nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries found (looked at pg_config --bindir, " +
		"initdb on PATH and /usr/lib/postgresql/*/bin): " + installHint)
}

func checkBinDir(dir string) error {
	for _, name := range serverBinaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s has no executable %s: %s", dir, name, installHint)
		}
	}
	return nil
}

// pgConfigBinDir may name a directory without the server when only the
// client development package is installed; FindBinDir checks it.
func pgConfigBinDir() string {
	path, err := exec.LookPath("pg_config")
	if err != nil {
		return ""
	}
	out, err := exec.Command(path, "--bindir").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// pathBinDir resolves symlinks because Debian links only some binaries into
// /usr/bin or /usr/local/bin, and the rest live next to the real initdb.
func pathBinDir() string {
	path, err := exec.LookPath("initdb")
	if err != nil {
		return ""
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return ""
	}
	abs, err := filepath.Abs(real)
	if err != nil {
		return ""
	}
	return filepath.Dir(abs)
}

var majorVersion = regexp.MustCompile(`postgresql[@/](\d+)`)

// knownBinDirs lists where packages put the server when it is not on PATH,
// newest major version first. Homebrew's postgresql@N is keg-only, so the
// install hint would not work without looking there.
func knownBinDirs() []string {
	var dirs []string
	for _, pattern := range []string{
		"/usr/lib/postgresql/*/bin",
		"/opt/homebrew/opt/postgresql@*/bin",
		"/usr/local/opt/postgresql@*/bin",
	} {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			continue
		}
		dirs = append(dirs, matches...)
	}
	version := func(dir string) int {
		m := majorVersion.FindStringSubmatch(dir)
		if m == nil {
			return 0
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return 0
		}
		return n
	}
	sort.SliceStable(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	return dirs
}

// Options describes the cluster to run.
type Options struct {
	// BinDir holds initdb, pg_ctl and postgres; see FindBinDir.
	BinDir string
	// DataDir is the cluster directory (PGDATA). Start creates and
	// initialises it when it holds no cluster.
	DataDir string
	// Port is the TCP port on 127.0.0.1. Zero means the port remembered in
	// DataDir, or a free one chosen (and remembered) when there is none.
	Port int
	// Fast trades crash safety for speed (fsync, synchronous_commit and
	// full_page_writes off); meant for throwaway test clusters.
	Fast bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// Settings are more postgresql.conf settings (name → value, quoted as needed), written
	// after the others so that they win.
	Settings map[string]string
}

// Cluster is a running PostgreSQL server. Its methods are not safe for
// concurrent use.
type Cluster struct {
	opts     Options // BinDir and DataDir absolute, Log non-nil
	account  *account
	port     int
	password string // the superuser's, as kept in passwordFileName
	started  bool   // this Cluster started the server, rather than finding it running
}

// Start initialises the cluster in opts.DataDir if there is none, then starts
// the server unless it is already running, and returns once it accepts
// connections. A server that is already running is reused and left running by
// StopIfStarted. Calling Start again with the same Options after Stop brings
// the same cluster back on the same port.
//
// A cluster without the password file or with another pg_hba.conf (one an
// older DevOpstic left trusting every local connection) gets a new password
// and this package's pg_hba.conf, running or not; its data is kept.
//
// When run as root, the server runs as the postgres OS user, because
// PostgreSQL refuses to run as root; every directory above DataDir must then
// be enterable by that user.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.BinDir == "" {
		return nil, errors.New("pgcluster: no BinDir given; find one with FindBinDir")
	}
	if opts.DataDir == "" {
		return nil, errors.New("pgcluster: no DataDir given")
	}
	var err error
	if opts.BinDir, err = filepath.Abs(opts.BinDir); err != nil {
		return nil, fmt.Errorf("pgcluster: bin dir: %w", err)
	}
	// Absolute because the commands run from "/" (the postgres user may not
	// be able to enter our working directory) and the socket path must be.
	if opts.DataDir, err = filepath.Abs(opts.DataDir); err != nil {
		return nil, fmt.Errorf("pgcluster: data dir: %w", err)
	}
	if err := checkBinDir(opts.BinDir); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	acct, err := serverAccount()
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, account: acct}
	if err := c.start(ctx, opts.Port); err != nil {
		return nil, err
	}
	return c, nil
}

// StartAgain starts the server of c again after Stop, on the same port, for
// tests that take the database away and bring it back.
func (c *Cluster) StartAgain(ctx context.Context) error {
	return c.start(ctx, c.port)
}

// Port is the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// DataDir is the absolute path of the cluster directory.
func (c *Cluster) DataDir() string { return c.opts.DataDir }

// URL returns a connection URL for database as the superuser postgres, with
// its password, over TCP to 127.0.0.1, without TLS.
func (c *Cluster) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(superuser, c.password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates database name unless it exists, copying template
// ("" for the server's default, template1).
func (c *Cluster) CreateDatabase(ctx context.Context, name, template string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("create database %s: connect: %w", name, err)
	}
	defer conn.Close(context.Background())

	var exists bool
	err = conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		return fmt.Errorf("create database %s: look it up: %w", name, err)
	}
	if exists {
		return nil
	}
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		// Another process may have created it since we looked.
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
			return nil
		}
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// Stop stops the server with a fast shutdown (open sessions are ended) and
// waits for it to exit. Stopping a server that is not running is not an error.
func (c *Cluster) Stop() error {
	running, err := c.running()
	if err != nil {
		return err
	}
	if !running {
		c.started = false
		return nil
	}
	out, err := c.command(context.Background(), "pg_ctl", "stop", "-D", c.opts.DataDir, "-m", "fast", "-w", "-t", "60").CombinedOutput()
	if err != nil {
		return fmt.Errorf("stop PostgreSQL in %s: %w: %s", c.opts.DataDir, err, bytes.TrimSpace(out))
	}
	c.started = false
	fmt.Fprintf(c.opts.Log, "stopped PostgreSQL on 127.0.0.1:%d\n", c.port)
	return nil
}

// StopIfStarted stops the server only if this Cluster started it, so that
// `make run` leaves alone a server someone else was already running.
func (c *Cluster) StopIfStarted() error {
	if !c.started {
		return nil
	}
	return c.Stop()
}

func (c *Cluster) start(ctx context.Context, port int) error {
	dataDir := c.opts.DataDir
	if err := prepareDataDir(dataDir, c.account); err != nil {
		return err
	}
	if !hasCluster(dataDir) {
		if err := c.initdb(ctx); err != nil {
			return err
		}
	}
	running, err := c.running()
	if err != nil {
		return err
	}
	if running {
		return c.reuse(ctx, port)
	}
	if err := c.lock(ctx, false); err != nil {
		return err
	}

	if port == 0 {
		if port, err = storedPort(dataDir); err != nil {
			return err
		}
	}
	picked := port == 0
	for attempt := 1; ; attempt++ {
		if picked {
			if port, err = freePort(); err != nil {
				return err
			}
		}
		if err := c.writeConf(port); err != nil {
			return err
		}
		err = c.pgCtlStart(ctx, port)
		if err == nil {
			break
		}
		// A port we picked may be taken between choosing and binding it;
		// a port the caller or the last run chose is not ours to change.
		if !picked || attempt == 3 || !strings.Contains(err.Error(), "Address already in use") {
			return err
		}
	}
	c.port = port
	c.started = true
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.opts.Log, "started PostgreSQL on 127.0.0.1:%d\n", port)
	return nil
}

func (c *Cluster) reuse(ctx context.Context, port int) error {
	pid, err := readPidFile(c.opts.DataDir)
	if err != nil {
		return err
	}
	if port != 0 && pid.port != port {
		return fmt.Errorf("PostgreSQL in %s is already running on port %d, not %d: stop it with `pg_ctl stop -D %s`",
			c.opts.DataDir, pid.port, port, c.opts.DataDir)
	}
	c.port = pid.port
	c.started = false
	if err := c.lock(ctx, true); err != nil {
		return err
	}
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.opts.Log, "reusing PostgreSQL already running on 127.0.0.1:%d\n", c.port)
	return nil
}

// initdb makes the cluster rejecting every connection: lock, which runs
// before the first start, then gives it its password and pg_hba.conf, the same
// way as it upgrades a cluster an older version made.
func (c *Cluster) initdb(ctx context.Context) error {
	fmt.Fprintf(c.opts.Log, "initialising a PostgreSQL cluster in %s\n", c.opts.DataDir)
	args := []string{"-D", c.opts.DataDir, "-U", superuser, "--auth=reject", "-E", "UTF8", "--no-locale"}
	if c.opts.Fast {
		args = append(args, "--no-sync")
	}
	out, err := c.command(ctx, "initdb", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("initialise PostgreSQL cluster in %s: %w: %s", c.opts.DataDir, err, bytes.TrimSpace(out))
	}
	return nil
}

// lock makes sure that the cluster takes connections with the password kept
// in passwordFileName only, and loads the password into c. Without a kept password
// a new one is made; then, or when pg_hba.conf is not ours (an older version's
// trust, or a crash between the two steps), the superuser is given the
// password and pg_hba.conf is rewritten. A running server is changed where it
// runs, through a connection its old pg_hba.conf lets in; a stopped one in
// single-user mode, which listens nowhere.
func (c *Cluster) lock(ctx context.Context, running bool) error {
	path := filepath.Join(c.opts.DataDir, passwordFileName)
	password, err := readPassword(path)
	if err != nil {
		return err
	}
	hba, err := os.ReadFile(filepath.Join(c.opts.DataDir, hbaName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read pg_hba.conf of PostgreSQL in %s: %w", c.opts.DataDir, err)
	}
	ours := string(hba) == hbaConf
	if password != "" && ours {
		c.password = password
		return nil
	}
	if password == "" {
		if running && ours {
			// Only the lost password would let us in to set a new one.
			return fmt.Errorf("PostgreSQL in %s is running, and its password file %s is missing: "+
				"stop it (`pg_ctl stop -D %s`) and start again, which sets a new password", c.opts.DataDir, path, c.opts.DataDir)
		}
		if password, err = newPassword(); err != nil {
			return err
		}
		// Kept before it is set, so that it is never set and lost.
		if err := writePassword(path, password); err != nil {
			return err
		}
	}
	c.password = password
	if trusts(hba) {
		fmt.Fprintf(c.opts.Log, "PostgreSQL in %s trusted every local connection (as DevOpstic made it before): "+
			"it now requires the password kept in %s\n", c.opts.DataDir, path)
	}
	if running {
		return c.lockRunning(ctx)
	}
	if err := c.setPasswordSingleUser(ctx); err != nil {
		return err
	}
	return c.writeServerFile(hbaName, hbaConf)
}

// trusts says whether a pg_hba.conf has a rule with the method trust. Comments do not count:
// the sample initdb writes names every method in them, trust included.
func trusts(hba []byte) bool {
	for _, line := range strings.Split(string(hba), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if slices.Contains(strings.Fields(line), "trust") {
			return true
		}
	}
	return false
}

// setPasswordSingleUser sets the superuser's password with the server stopped.
func (c *Cluster) setPasswordSingleUser(ctx context.Context) error {
	cmd := c.command(ctx, "postgres", "--single", "-D", c.opts.DataDir,
		"-c", "exit_on_error=on", "-c", "password_encryption=scram-sha-256", "postgres")
	cmd.Stdin = strings.NewReader(alterPassword(c.password) + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		// On an error the server repeats the statement, password included.
		out = bytes.ReplaceAll(out, []byte(c.password), []byte("(the password)"))
		return fmt.Errorf("set the password of PostgreSQL in %s: %w: %s", c.opts.DataDir, err, bytes.TrimSpace(out))
	}
	return nil
}

// lockRunning sets the password and pg_hba.conf of a running server that
// trusts us, and returns once it refuses a connection without the password.
func (c *Cluster) lockRunning(ctx context.Context) error {
	fail := func(err error) error {
		return fmt.Errorf("require a password of the PostgreSQL running in %s: %w", c.opts.DataDir, err)
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fail(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SET password_encryption = 'scram-sha-256'"); err != nil {
		return fail(err)
	}
	if _, err := conn.Exec(ctx, alterPassword(c.password)); err != nil {
		return fail(errors.New(strings.ReplaceAll(err.Error(), c.password, "(the password)")))
	}
	if err := c.writeServerFile(hbaName, hbaConf); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fail(err)
	}
	// The postmaster reloads pg_hba.conf when it gets to the signal.
	u, err := url.Parse(c.URL("postgres"))
	if err != nil {
		return fail(err)
	}
	u.User = url.User(superuser)
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		err := ping(ctx, u.String())
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000") { // invalid_password, invalid_authorization_specification
			return nil
		}
		select {
		case <-ctx.Done():
			return fail(fmt.Errorf("it still lets in a connection without the password after reloading pg_hba.conf (%v)", err))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func alterPassword(password string) string {
	return "ALTER ROLE " + superuser + " PASSWORD '" + strings.ReplaceAll(password, "'", "''") + "'"
}

// newPassword is 256 random bits in base64url, which needs no quoting in a URL or SQL.
func newPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a PostgreSQL password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// readPassword returns the kept password, "" when there is none; it makes the
// file readable by its owner only, whatever it was.
func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the PostgreSQL password: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return "", fmt.Errorf("restrict the PostgreSQL password file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// writePassword keeps password at path, mode 0600, owned by us (we read it; the
// server never does). It is written whole or not at all.
func writePassword(path, password string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(password+"\n"), 0o600); err != nil {
		return fmt.Errorf("keep the PostgreSQL password: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("keep the PostgreSQL password: %w", err)
	}
	return nil
}

func (c *Cluster) writeConf(port int) error {
	dataDir := c.opts.DataDir
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by DevOpstic's pgcluster on every start; edits are lost.\n")
	fmt.Fprintf(&b, "port = %d\n", port)
	fmt.Fprintf(&b, "listen_addresses = '127.0.0.1'\n")
	if len(dataDir)+len("/.s.PGSQL.65535") <= maxSocketPath {
		fmt.Fprintf(&b, "unix_socket_directories = '%s'\n", strings.ReplaceAll(dataDir, "'", "''"))
	} else {
		// A socket path that does not fit sun_path stops the server, and we
		// only connect over TCP, so a deep data directory gets no socket.
		fmt.Fprintf(&b, "unix_socket_directories = ''\n")
	}
	fmt.Fprintf(&b, "password_encryption = 'scram-sha-256'\n")
	if c.opts.Fast {
		b.WriteString("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
	}
	for _, name := range slices.Sorted(maps.Keys(c.opts.Settings)) {
		fmt.Fprintf(&b, "%s = %s\n", name, c.opts.Settings[name])
	}
	if err := c.writeServerFile(confName, b.String()); err != nil {
		return err
	}
	return includeConf(filepath.Join(dataDir, "postgresql.conf"))
}

// writeServerFile writes a file of the data directory that the server reads:
// mode 0600 and owned by the server's account.
func (c *Cluster) writeServerFile(name, content string) error {
	path := filepath.Join(c.opts.DataDir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("configure PostgreSQL cluster: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil { // WriteFile keeps the mode of a file that exists
		return fmt.Errorf("configure PostgreSQL cluster: %w", err)
	}
	if c.account != nil {
		if err := os.Chown(path, int(c.account.uid), int(c.account.gid)); err != nil {
			return fmt.Errorf("configure PostgreSQL cluster: %w", err)
		}
	}
	return nil
}

// includeConf adds the include line to postgresql.conf unless it is there,
// which also covers a cluster initialised by something else.
// include_if_exists keeps the cluster startable by hand even if someone
// deletes our file.
func includeConf(path string) error {
	include := fmt.Sprintf("include_if_exists = '%s'", confName)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("configure PostgreSQL cluster: %w", err)
	}
	if bytes.Contains(data, []byte(include)) {
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("configure PostgreSQL cluster: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# Added by DevOpstic: %s is rewritten on every start.\n%s\n", confName, include)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("configure PostgreSQL cluster: %w", err)
	}
	return nil
}

var confPort = regexp.MustCompile(`(?m)^\s*port\s*=\s*(\d+)`)

// storedPort reads the port the last start wrote, 0 when there is none yet.
func storedPort(dataDir string) (int, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, confName))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the port of the PostgreSQL cluster: %w", err)
	}
	m := confPort.FindSubmatch(data)
	if m == nil {
		return 0, nil
	}
	port, err := strconv.Atoi(string(m[1]))
	if err != nil {
		return 0, fmt.Errorf("read the port of the PostgreSQL cluster from %s: %w", confName, err)
	}
	return port, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port for PostgreSQL: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port for PostgreSQL: %w", err)
	}
	return port, nil
}

func (c *Cluster) pgCtlStart(ctx context.Context, port int) error {
	logPath := filepath.Join(c.opts.DataDir, logName)
	// Only what this attempt logs explains its failure; the log is appended
	// to across runs.
	var offset int64
	if fi, err := os.Stat(logPath); err == nil {
		offset = fi.Size()
	}
	out, err := c.command(ctx, "pg_ctl", "start", "-D", c.opts.DataDir, "-l", logPath,
		"-w", "-t", strconv.Itoa(int(readyTimeout/time.Second))).CombinedOutput()
	if err != nil {
		return fmt.Errorf("start PostgreSQL on 127.0.0.1:%d in %s: %w: %s\nlast lines of %s:\n%s",
			port, c.opts.DataDir, err, bytes.TrimSpace(out), logPath, logTail(logPath, offset))
	}
	return nil
}

// waitReady checks with a real connection, because pg_ctl only reports that
// the server says it is ready, not that we can reach it over TCP.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		err := ping(ctx, c.URL("postgres"))
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("PostgreSQL on 127.0.0.1:%d did not accept connections within %s: %w\nlast lines of %s:\n%s",
				c.port, readyTimeout, err, filepath.Join(c.opts.DataDir, logName),
				logTail(filepath.Join(c.opts.DataDir, logName), 0))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func ping(ctx context.Context, connURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// running reports whether the cluster's server is up. pg_ctl only checks that
// the PID in postmaster.pid is alive, and after a crash or reboot that PID may
// belong to an unrelated process or an unreaped zombie, which would also make
// the new server refuse to start; such a pid file is removed here.
func (c *Cluster) running() (bool, error) {
	pidPath := filepath.Join(c.opts.DataDir, "postmaster.pid")
	if _, err := os.Stat(pidPath); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	out, err := c.command(context.Background(), "pg_ctl", "status", "-D", c.opts.DataDir).CombinedOutput()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && exitErr.ExitCode() == 3: // not running
		return false, nil
	default:
		return false, fmt.Errorf("check whether PostgreSQL in %s is running: %w: %s", c.opts.DataDir, err, bytes.TrimSpace(out))
	}
	pid, err := readPidFile(c.opts.DataDir)
	if err != nil {
		return false, err
	}
	if isPostgresProcess(pid.pid) {
		return true, nil
	}
	// The socket lock files in our private socket directory name the same
	// PID and would stop the server just the same.
	fmt.Fprintf(c.opts.Log, "removing stale lock files in %s (PID %d is not a PostgreSQL server)\n", c.opts.DataDir, pid.pid)
	locks, err := filepath.Glob(filepath.Join(c.opts.DataDir, ".s.PGSQL.*.lock"))
	if err != nil {
		return false, fmt.Errorf("find stale PostgreSQL lock files: %w", err)
	}
	for _, path := range append(locks, pidPath) {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("remove stale PostgreSQL lock file: %w", err)
		}
	}
	return false, nil
}

type pidFile struct {
	pid  int
	port int
}

// readPidFile reads postmaster.pid, whose first line is the server's PID and
// fourth its port.
func readPidFile(dataDir string) (pidFile, error) {
	path := filepath.Join(dataDir, "postmaster.pid")
	data, err := os.ReadFile(path)
	if err != nil {
		return pidFile{}, fmt.Errorf("read PostgreSQL pid file: %w", err)
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) < 4 {
		return pidFile{}, fmt.Errorf("read PostgreSQL pid file %s: it has %d lines, want at least 4", path, len(lines))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil {
		return pidFile{}, fmt.Errorf("read PostgreSQL pid file %s: PID: %w", path, err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err != nil {
		return pidFile{}, fmt.Errorf("read PostgreSQL pid file %s: port: %w", path, err)
	}
	return pidFile{pid: pid, port: port}, nil
}

// isPostgresProcess reads /proc where there is one; elsewhere it trusts
// pg_ctl, which has already found the PID alive.
func isPostgresProcess(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		if _, statErr := os.Stat("/proc/self/stat"); statErr != nil {
			return true // no procfs on this system
		}
		return false
	}
	if err != nil {
		return true
	}
	// Format: "PID (COMM) STATE ..."; COMM may itself hold parentheses.
	s := string(data)
	lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if lp < 0 || rp < lp || rp+3 > len(s) {
		return true
	}
	comm, state := s[lp+1:rp], s[rp+2]
	return comm == "postgres" && state != 'Z' && state != 'X'
}

// logTail returns the last lines of the server log written after offset.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read it: %v)", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return fmt.Sprintf("(cannot read it: %v)", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read it: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return strings.Join(lines, "\n")
}

func hasCluster(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "PG_VERSION"))
	return err == nil
}

// account is the OS user the server runs as when we are root.
type account struct {
	name     string
	uid, gid uint32
	groups   []uint32
}

// serverAccount returns nil when we are not root: the server then runs as us.
func serverAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(superuser)
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses to run as root, but there is no %q user to run it as (%w): "+
			"create an unprivileged user (e.g. `useradd --system --create-home postgres`) or run as a non-root user", superuser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", superuser, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", superuser, u.Gid, err)
	}
	a := &account{name: u.Username, uid: uint32(uid), gid: uint32(gid)}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("user %s: groups: %w", superuser, err)
	}
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("user %s: group %q: %w", superuser, id, err)
		}
		a.groups = append(a.groups, uint32(g))
	}
	return a, nil
}

// canEnter applies the owner/group/other execute bit that the kernel would
// check for this account.
func (a *account) canEnter(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	perm := fi.Mode().Perm()
	if uint32(st.Uid) == a.uid {
		return perm&0o100 != 0
	}
	if uint32(st.Gid) == a.gid {
		return perm&0o010 != 0
	}
	for _, g := range a.groups {
		if uint32(st.Gid) == g {
			return perm&0o010 != 0
		}
	}
	return perm&0o001 != 0
}

// prepareDataDir creates dataDir and, when the server runs as another user,
// hands it the directories we create and checks it can reach them.
func prepareDataDir(dataDir string, acct *account) error {
	if acct == nil {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return fmt.Errorf("create PostgreSQL data directory: %w", err)
		}
		return nil
	}

	var missing []string
	for dir := dataDir; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(dir); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("create PostgreSQL data directory: %w", err)
		}
		missing = append(missing, dir)
		if dir == filepath.Dir(dir) {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		mode := os.FileMode(0o755)
		if i == 0 {
			mode = 0o700 // PostgreSQL refuses a group- or world-writable data directory
		}
		if err := os.Mkdir(missing[i], mode); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create PostgreSQL data directory: %w", err)
		}
		if err := os.Chown(missing[i], int(acct.uid), int(acct.gid)); err != nil {
			return fmt.Errorf("give %s to the %s user: %w", missing[i], acct.name, err)
		}
	}

	for dir := filepath.Dir(dataDir); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("check PostgreSQL data directory: %w", err)
		}
		if !acct.canEnter(fi) {
			return fmt.Errorf("PostgreSQL runs as the %s user, which cannot enter %s (mode %#o) on the way to %s: "+
				"allow it with `chmod o+x %s` or choose a data directory it can reach",
				acct.name, dir, fi.Mode().Perm(), dataDir, dir)
		}
		if dir == filepath.Dir(dir) {
			break
		}
	}

	// initdb wants an empty directory it owns; an existing cluster is left
	// as it is, and the server reports wrong ownership itself.
	if !hasCluster(dataDir) {
		if err := os.Chown(dataDir, int(acct.uid), int(acct.gid)); err != nil {
			return fmt.Errorf("give %s to the %s user: %w", dataDir, acct.name, err)
		}
		if err := os.Chmod(dataDir, 0o700); err != nil {
			return fmt.Errorf("restrict PostgreSQL data directory: %w", err)
		}
	}
	return nil
}

// command runs a server binary as the server's account, from "/" because
// that account may not be able to enter our working directory, and in its
// own process group so a Ctrl-C in the terminal reaches our program (which
// shuts down in order) rather than the server directly.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.opts.BinDir, name), args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.account != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: c.account.uid, Gid: c.account.gid, Groups: c.account.groups}
	}
	return cmd
}
