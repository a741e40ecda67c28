package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/pgcluster"
	"github.com/devopstic/devopstic/pkg/store"
)

// dev is what `make run` starts: serve, with whatever a newcomer's machine lacks filled in
// locally: a Postgres cluster under the data directory (unless DEVOPSTIC_DATABASE_URL is set),
// a JWT key kept in the data directory (so tokens survive a restart), and admin/admin unless
// DEVOPSTIC_USERNAME and DEVOPSTIC_PASSWORD are set, which it refuses to serve beyond this
// machine.
func dev(ctx context.Context, cfg config.AllInOne, stdout io.Writer, log *slog.Logger) error {
	defaultLogin := cfg.Auth.Username == "" && cfg.Auth.Password == ""
	if defaultLogin {
		// Before anything starts: a refusal should leave nothing behind.
		if err := loopbackOnly(cfg.HTTP); err != nil {
			return err
		}
		cfg.Auth.Username, cfg.Auth.Password = "admin", "admin"
	}
	dataDir, err := filepath.Abs(cfg.Embedded.DataDir)
	if err != nil {
		return fmt.Errorf("DEVOPSTIC_DATA_DIR: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	cfg.Embedded.DataDir = dataDir
	if cfg.Auth.JWTSecret == "" {
		if cfg.Auth.JWTSecret, err = localSecret(filepath.Join(dataDir, "jwt-secret")); err != nil {
			return err
		}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}

	if cfg.Database.URL == "" {
		cluster, err := startLocalPostgres(ctx, cfg.Embedded, stdout)
		if err != nil {
			return err
		}
		defer func() {
			if err := cluster.StopIfStarted(); err != nil {
				log.Error("stop local PostgreSQL", "error", err)
			}
		}()
		cfg.Database.URL = cluster.URL("devopstic")
	}
	if err := store.Migrate(ctx, cfg.Database.ConnString()); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (set DEVOPSTIC_HTTP_ADDR to use another address): %w", cfg.HTTP.Addr, err)
	}
	printWelcome(stdout, cfg, ln.Addr(), defaultLogin)
	return serve(ctx, cfg, ln, log)
}

// loopbackOnly refuses an HTTP configuration that other machines can reach: the default
// login is known to everyone. Only a literal loopback address or "localhost" is loopback; a
// host name could resolve to anything, and an empty host is every address. A proxy header
// means a proxy passes on others' requests.
func loopbackOnly(h config.HTTP) error {
	const fix = "set DEVOPSTIC_USERNAME and DEVOPSTIC_PASSWORD (a password of your own), " +
		"or keep DEVOPSTIC_HTTP_ADDR on loopback (127.0.0.1:8080)"
	host, _, err := net.SplitHostPort(h.Addr)
	if err != nil {
		return fmt.Errorf("DEVOPSTIC_HTTP_ADDR must be host:port such as 127.0.0.1:8080, not %q", h.Addr)
	}
	if !isLoopback(host) {
		return fmt.Errorf("refusing to serve the default login admin/admin on DEVOPSTIC_HTTP_ADDR=%s, which other machines can reach: %s", h.Addr, fix)
	}
	if h.ProxyHeader != "" {
		return fmt.Errorf("refusing to serve the default login admin/admin behind a proxy (DEVOPSTIC_PROXY_HEADER is set), which passes on other machines' requests: %s", fix)
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func startLocalPostgres(ctx context.Context, cfg config.Embedded, stdout io.Writer) (*pgcluster.Cluster, error) {
	binDir, err := pgcluster.FindBinDir(cfg.PGBinDir)
	if err != nil {
		return nil, fmt.Errorf("%w\n(or point DEVOPSTIC_DATABASE_URL at a PostgreSQL server you have)", err)
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{
		BinDir:  binDir,
		DataDir: filepath.Join(cfg.DataDir, "postgres"),
		Log:     stdout,
	})
	if err != nil {
		return nil, fmt.Errorf("start local PostgreSQL: %w", err)
	}
	if err := cluster.CreateDatabase(ctx, "devopstic", ""); err != nil {
		return nil, errors.Join(err, cluster.StopIfStarted())
	}
	return cluster, nil
}

// localSecret reads the key kept at path, or makes one and keeps it there (readable by the
// owner only).
func localSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= config.MinJWTSecret {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read local JWT key: %w", err)
	}
	key := make([]byte, 48)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generate local JWT key: %w", err)
	}
	secret := base64.RawURLEncoding.EncodeToString(key)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("keep local JWT key: %w", err)
	}
	return secret, nil
}

// printWelcome shows the address the server listens on (addr: the port chosen for :0), with a
// host curl can reach from this machine.
func printWelcome(w io.Writer, cfg config.AllInOne, addr net.Addr, defaultLogin bool) {
	host, _, err := net.SplitHostPort(cfg.HTTP.Addr)
	if ip, perr := netip.ParseAddr(host); err != nil || host == "" || (perr == nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	port := "0"
	if tcp, ok := addr.(*net.TCPAddr); ok {
		port = strconv.Itoa(tcp.Port)
	}
	base := "http://" + net.JoinHostPort(host, port)
	password := `'"$DEVOPSTIC_PASSWORD"'` // the shell fills in the password it was started with
	if defaultLogin {
		password = cfg.Auth.Password
		fmt.Fprintln(w, `
  The login is admin/admin because DEVOPSTIC_USERNAME and DEVOPSTIC_PASSWORD are unset; it is
  served on loopback only. Set both to serve other machines (DEVOPSTIC_HTTP_ADDR=0.0.0.0:8080).`)
	}
	fmt.Fprintf(w, `
DevOpstic is running at %[1]s  (Ctrl-C stops it; data is kept in %[2]s)

Open the page:  %[1]s/  (log in as %[3]s; make demo loads 90 days of history to look at)

Get a token:
  TOKEN=$(curl -s -X POST %[1]s/tokens -H 'Content-Type: application/json' \
    -d '{"username":"%[3]s","password":"%[4]s"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')

Post a deployment:
  curl -i -X POST %[1]s/events -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"type":"deploy","pipeline_id":"api","environment":"production","commit_id":"abc123","timestamp":1795600800}'

See it:
  curl -s %[1]s/events -H "Authorization: Bearer $TOKEN"

`, base, cfg.Embedded.DataDir, cfg.Auth.Username, password)
}
