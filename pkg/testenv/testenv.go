// Package testenv gives tests the real servers DevOpstic runs on: a Postgres database of their
// own (migrated, from a cluster the test binary starts, or from DEVOPSTIC_TEST_DATABASE_URL)
// and an embedded NATS JetStream server. Nothing here is a fake. The cluster asks for its
// password as `make run`'s does (pkg/pgcluster), and the URLs handed out carry it.
//
// A test package that uses Postgres calls testenv.Main from its TestMain, so the cluster it
// started is stopped when the package's tests end.
package testenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/devopstic/devopstic/pkg/pgcluster"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
)

// The cluster shared by a test binary's tests, started on first use.
var (
	shared struct {
		once      sync.Once
		err       error
		cluster   *pgcluster.Cluster // nil when DEVOPSTIC_TEST_DATABASE_URL is used
		dir       string
		adminURL  string // a database to run CREATE DATABASE from
		template  string
		mu        sync.Mutex
		longLived []string // databases of ProcessPostgres, dropped by Main
	}
	dbCounter atomic.Int64
)

// Main runs a package's tests and then stops the Postgres cluster they started.
func Main(m *testing.M) {
	code := m.Run()
	for _, name := range shared.longLived {
		dropDatabase(nil, name)
	}
	if shared.cluster != nil {
		if err := shared.cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: stop Postgres:", err)
		}
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// Postgres returns the URL of a new, migrated database for this test; it is dropped when the
// test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	name, dbURL := newDatabase(t)
	t.Cleanup(func() { dropDatabase(t, name) })
	return dbURL
}

// ProcessPostgres returns the URL of a new, migrated database that lives until Main returns:
// for benchmarks, whose data outlives the b.N=1 run that first loaded it.
func ProcessPostgres(t testing.TB) string {
	t.Helper()
	name, dbURL := newDatabase(t)
	shared.mu.Lock()
	shared.longLived = append(shared.longLived, name)
	shared.mu.Unlock()
	return dbURL
}

func dropDatabase(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := exec(ctx, shared.adminURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil && t != nil {
		t.Logf("testenv: drop database %s: %v", name, err)
	}
}

func newDatabase(t testing.TB) (name, dbURL string) {
	t.Helper()
	shared.once.Do(startShared)
	if shared.err != nil {
		t.Fatalf("testenv: Postgres: %v", shared.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name = fmt.Sprintf("test_%d_%d", os.Getpid(), dbCounter.Add(1))
	if err := exec(ctx, shared.adminURL, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{shared.template}.Sanitize()); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	return name, withDatabase(shared.adminURL, name)
}

// startShared starts (or finds) the cluster and prepares a migrated template database, so a
// test's database is a cheap copy.
func startShared() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if u := os.Getenv("DEVOPSTIC_TEST_DATABASE_URL"); u != "" {
		shared.adminURL = u
	} else {
		cluster, dir, err := startCluster(ctx)
		if err != nil {
			shared.err = err
			return
		}
		shared.cluster, shared.dir = cluster, dir
		shared.adminURL = cluster.URL("postgres")
	}
	shared.template = fmt.Sprintf("devopstic_template_%d", os.Getpid())
	if err := exec(ctx, shared.adminURL, "CREATE DATABASE "+pgx.Identifier{shared.template}.Sanitize()); err != nil {
		shared.err = fmt.Errorf("create template database: %w", err)
		return
	}
	if err := store.Migrate(ctx, withDatabase(shared.adminURL, shared.template)); err != nil {
		shared.err = fmt.Errorf("migrate template database: %w", err)
	}
}

// PrivatePostgres starts a cluster for this test alone, for tests that stop and start the
// server. It returns the cluster and the URL of a migrated database on it.
func PrivatePostgres(t testing.TB) (*pgcluster.Cluster, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster, dir, err := startCluster(ctx)
	if err != nil {
		t.Fatalf("testenv: private Postgres: %v", err)
	}
	t.Cleanup(func() {
		if err := cluster.Stop(); err != nil {
			t.Logf("testenv: stop private Postgres: %v", err)
		}
		_ = os.RemoveAll(dir)
	})
	if err := cluster.CreateDatabase(ctx, "devopstic", ""); err != nil {
		t.Fatalf("testenv: private Postgres: %v", err)
	}
	dbURL := cluster.URL("devopstic")
	if err := store.Migrate(ctx, dbURL); err != nil {
		t.Fatalf("testenv: private Postgres: %v", err)
	}
	return cluster, dbURL
}

func startCluster(ctx context.Context) (*pgcluster.Cluster, string, error) {
	binDir, err := pgcluster.FindBinDir(os.Getenv("DEVOPSTIC_PG_BINDIR"))
	if err != nil {
		return nil, "", err
	}
	// Not t.TempDir: the server may run as the postgres user, who must be able to enter it.
	dir, err := os.MkdirTemp("", "devopstic-pg-")
	if err != nil {
		return nil, "", fmt.Errorf("temp dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, "", fmt.Errorf("temp dir: %w", err)
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{BinDir: binDir, DataDir: filepath.Join(dir, "pg"), Fast: true})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", err
	}
	return cluster, dir, nil
}

func exec(ctx context.Context, dbURL, sql string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func withDatabase(dbURL, name string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		panic(fmt.Sprintf("testenv: database URL: %v", err))
	}
	u.Path = "/" + name
	return u.String()
}

// NATS is an embedded JetStream server for one test, on a fixed port so that it can be stopped
// and started again at the same URL (Restart). Like every DevOpstic NATS server it refuses a
// client without a user and password (Login gives a role's), and it has the stream and the auth
// bucket, set up by the admin as `devopstic migrate` does in a deployment.
type NATS struct {
	URL string
	// DataDir holds the passwords in stream.PasswordsFile, as an all-in-one's data directory
	// does: one run with DEVOPSTIC_DATA_DIR=DataDir connects each role as its own user.
	DataDir   string
	Passwords stream.Passwords
	cfg       stream.ServerConfig
	srv       *server.Server
}

// StartNATS starts an embedded JetStream server with its own store; it stops when the test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	n := &NATS{DataDir: t.TempDir()}
	if n.Passwords, err = stream.LocalPasswords(filepath.Join(n.DataDir, stream.PasswordsFile)); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	n.cfg = stream.ServerConfig{StoreDir: t.TempDir(), Host: "127.0.0.1", Port: port, Passwords: n.Passwords}
	n.URL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	if err := n.Start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(n.Stop)
	if err := n.setUp(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return n
}

// Login is role's login to the server.
func (n *NATS) Login(role stream.Role) stream.Login { return n.Passwords.As(role) }

// Env is what a service process of role (the ingest, the writer) needs to reach the server:
// DEVOPSTIC_NATS_URL, DEVOPSTIC_NATS_USER and DEVOPSTIC_NATS_PASSWORD, as NAME=value.
func (n *NATS) Env(role stream.Role) []string {
	return []string{"DEVOPSTIC_NATS_URL=" + n.URL, "DEVOPSTIC_NATS_USER=" + role.User(), "DEVOPSTIC_NATS_PASSWORD=" + n.Passwords[role]}
}

func (n *NATS) setUp() error {
	nc, err := stream.ConnectAs(n.URL, "testenv", n.Login(stream.RoleAdmin))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return stream.Setup(ctx, js, stream.Config{Replicas: 1, MaxAge: 365 * 24 * time.Hour, MaxBytes: -1, Duplicates: 24 * time.Hour})
}

// Start starts the server (again), with the same port, store and users.
func (n *NATS) Start() error {
	srv, err := stream.RunServer(n.cfg)
	if err != nil {
		return err
	}
	n.srv = srv
	return nil
}

// SetMaxPayload makes the server take messages of at most maxPayload bytes from its next
// Start on, as an operator reconfiguring NATS under running services would.
func (n *NATS) SetMaxPayload(maxPayload int32) { n.cfg.MaxPayload = maxPayload }

// Stop shuts the server down; its store is kept for Start.
func (n *NATS) Stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}
