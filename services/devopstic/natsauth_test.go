package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/auth"
	"github.com/devopstic/devopstic/pkg/stream"
)

// embeddedNATS runs the stack on serve's embedded NATS server (what `make run` does), with its
// data directory in dir, instead of on a server of the test's.
func embeddedNATS(t testing.TB, dir string) stackOption {
	t.Helper()
	addr := freeAddr(t)
	return func(env map[string]string) {
		delete(env, "DEVOPSTIC_NATS_URL")
		env["DEVOPSTIC_EMBEDDED_NATS_ADDR"] = addr
		env["DEVOPSTIC_DATA_DIR"] = dir
	}
}

// forgedKey is an API key an attacker made up, and the auth bucket's record that would make
// the ingest accept it.
const (
	forgedKey    = auth.APIKeyPrefix + "forged-forged-forged-forged-forged-forged-for"
	forgedRecord = `{"id":999,"name":"forged","scopes":["events:write","metrics:read"]}`
)

// quiet keeps the refusals a test expects out of its output (nats.go prints them by default).
var quiet = nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})

// forgeKey tries what issue 11 saw work: writing an API key's record into the auth bucket with
// a plain NATS client. It returns why NATS refused the connection or the write, or nil when
// the server took it.
func forgeKey(t testing.TB, url string, opts ...nats.Option) error {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second), quiet)...)
	if err != nil {
		return err
	}
	defer nc.Close()
	require.NoError(t, nc.Publish("$KV."+stream.AuthBucket+"."+auth.KeyEntry(auth.HashAPIKey(forgedKey)), []byte(forgedRecord)))
	// The server answers the flush after it refused the publish, if it did.
	require.NoError(t, nc.Flush())
	return nc.LastError()
}

// requireForgedKeyRefused checks that no forged record reached the ingest: a key made after
// the attempt, through the operator's command, is known once the ingest has read the bucket
// past where the forged record would be.
func (s *stack) requireForgedKeyRefused() {
	s.t.Helper()
	s.newKey("after-the-forgery", string(auth.ScopeRead))
	status, body := s.callRoute("GET", "/events", forgedKey)
	require.Equal(s.t, http.StatusUnauthorized, status, "the forged API key was accepted: %s", body)
}

// Issue 11, item 2: anyone who reached the embedded NATS server's port could write the auth
// bucket and so mint a working API key. Now an anonymous client is refused.
func TestEmbeddedNATSRefusesAnonymousClients(t *testing.T) {
	t.Parallel()
	s := startStack(t, "", embeddedNATS(t, t.TempDir()))
	err := forgeKey(t, "nats://"+s.cfg.Embedded.NATSAddr)
	s.requireForgedKeyRefused()
	require.ErrorIs(t, err, nats.ErrAuthorization, "an anonymous client connected to the embedded NATS server")
}

// make run's passwords: generated once into the data directory, readable by its owner only,
// the same after a restart. With them, each role does its part and no more: the ingest's
// cannot write the auth bucket, the writer's cannot publish events; the operator commands
// (the admin's) still work, and would be able to.
func TestEmbeddedNATSPasswords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := startStack(t, "", embeddedNATS(t, dir))
	path := filepath.Join(dir, stream.PasswordsFile)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	passwords, err := stream.ReadPasswords(path)
	require.NoError(t, err)
	first.stop()

	s := startStack(t, first.cfg.Database.URL, embeddedNATS(t, dir))
	again, err := stream.ReadPasswords(path)
	require.NoError(t, err)
	require.Equal(t, passwords, again, "the passwords changed on restart")
	url := "nats://" + s.cfg.Embedded.NATSAddr

	err = forgeKey(t, url, passwords.As(stream.RoleIngest).Options()...)
	require.ErrorIs(t, err, nats.ErrPermissionViolation, "the ingest's credentials wrote the auth bucket")
	err = forgeKey(t, url, passwords.As(stream.RoleWriter).Options()...)
	require.ErrorIs(t, err, nats.ErrPermissionViolation, "the writer's credentials wrote the auth bucket")
	s.requireForgedKeyRefused()

	writer, err := nats.Connect(url, append(passwords.As(stream.RoleWriter).Options(), quiet)...)
	require.NoError(t, err)
	defer writer.Close()
	require.NoError(t, writer.Publish(stream.Subject("native", "deploy"), []byte(`{"type":"deploy","pipeline_id":"forged","environment":"production","commit_id":"abc"}`)))
	require.NoError(t, writer.Flush())
	require.ErrorIs(t, writer.LastError(), nats.ErrPermissionViolation, "the writer's credentials published an event")

	// The operator commands connect as the admin, who may write the bucket: the test above
	// would have seen a forged record.
	require.NoError(t, forgeKey(t, url, passwords.As(stream.RoleAdmin).Options()...))
	require.Eventually(t, func() bool {
		status, _ := s.callRoute("GET", "/events", forgedKey)
		return status == http.StatusOK
	}, 10*time.Second, 5*time.Millisecond)
	require.Zero(t, s.count(`SELECT count(*) FROM events WHERE pipeline_id = 'forged'`))
}

// An operator command without the admin's password says what to set.
func TestOperatorCommandWithoutNATSCredentials(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	cfg := s.cfg
	cfg.Embedded.DataDir = t.TempDir() // no password file
	var out bytes.Buffer
	err := access(context.Background(), cfg, []string{"apikey", "create", "--name", "x", "--scope", "metrics:read"}, strings.NewReader(""), &out, &out)
	require.ErrorIs(t, err, stream.ErrCredentialsRefused)
	require.ErrorContains(t, err, "set DEVOPSTIC_NATS_USER and DEVOPSTIC_NATS_PASSWORD")

	cfg.NATS.User, cfg.NATS.Password = stream.RoleAdmin.User(), "wrong"
	err = access(context.Background(), cfg, []string{"apikey", "create", "--name", "x", "--scope", "metrics:read"}, strings.NewReader(""), &out, &out)
	require.ErrorContains(t, err, "NATS refused the credentials of user devopstic-admin: set DEVOPSTIC_NATS_USER and DEVOPSTIC_NATS_PASSWORD")

	cfg.NATS.Password = s.nats.Passwords[stream.RoleAdmin]
	err = access(context.Background(), cfg, []string{"apikey", "create", "--name", "x", "--scope", "metrics:read"}, strings.NewReader(""), &out, &out)
	require.NoError(t, err, "%s", out.String())
}
