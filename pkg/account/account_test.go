package account_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/account"
	"github.com/devopstic/devopstic/pkg/auth"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// setup returns a Manager on a database and an auth bucket of the test's own, with "ci" as the
// configured login, and the JetStream the bucket is in.
func setup(t *testing.T) (*account.Manager, jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, testenv.Postgres(t), 2)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	n := testenv.StartNATS(t)
	nc, err := stream.ConnectAs(n.URL, "account-test", n.Login(stream.RoleAdmin))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := stream.EnsureAuthBucket(ctx, js, 1)
	require.NoError(t, err)
	return &account.Manager{Store: st, Bucket: kv, ConfiguredLogin: "ci"}, js
}

// keyring is what an ingest knows: a Keyring following the manager's bucket.
func keyring(t *testing.T, m *account.Manager) *auth.Keyring {
	t.Helper()
	k := auth.NewKeyring()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Watch(ctx, m.Bucket, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() { stop(); <-done })
	require.Eventually(t, k.Loaded, 10*time.Second, time.Millisecond)
	return k
}

// entry reads a record of the bucket.
func entry[T any](t *testing.T, m *account.Manager, key string) T {
	t.Helper()
	e, err := m.Bucket.Get(context.Background(), key)
	require.NoError(t, err, key)
	var v T
	require.NoError(t, json.Unmarshal(e.Value(), &v))
	return v
}

func loginAt(name string, at time.Time) auth.Claims {
	c := auth.Claims{OrigIat: jwt.NewNumericDate(at)}
	c.Subject = name
	return c
}

// A user is added with a bcrypt hash of the password; what is refused says why, by its
// sentinel, and leaves nothing behind.
func TestAddUser(t *testing.T) {
	t.Parallel()
	m, _ := setup(t)
	ctx := context.Background()
	require.NoError(t, m.AddUser(ctx, "ana@example.com", auth.RoleAdmin, "first-password"))
	u, err := m.Store.User(ctx, "ana@example.com")
	require.NoError(t, err)
	require.Equal(t, "admin", u.Role)
	require.NotContains(t, u.PasswordHash, "first-password")
	require.NoError(t, auth.CheckPassword(u.PasswordHash, "first-password"))

	for _, tc := range []struct {
		name, user, password string
		wantErr              error
	}{
		{"taken name", "ana@example.com", "other-password", store.ErrExists},
		{"the configured login", "ci", "other-password", account.ErrConfiguredLogin},
		{"short password", "bob", "short", auth.ErrBadPassword},
		{"long password", "bob", strings.Repeat("p", auth.MaxPassword+1), auth.ErrBadPassword},
	} {
		err := m.AddUser(ctx, tc.user, auth.RoleReader, tc.password)
		require.ErrorIs(t, err, tc.wantErr, tc.name)
	}
	require.ErrorIs(t, m.CheckNewUser("ci"), account.ErrConfiguredLogin)
	require.ErrorContains(t, m.CheckNewUser("ci"), `"ci" is the configured login`)
	require.NoError(t, m.CheckNewUser("bob"))
	users, err := m.Store.Users(ctx)
	require.NoError(t, err)
	require.Len(t, users, 1)
	keys, err := m.Bucket.ListKeys(ctx)
	require.NoError(t, err)
	for k := range keys.Keys() {
		t.Errorf("adding a user wrote %s to the bucket: a new user has no token to revoke", k)
	}
}

// Changing a password or removing a user refuses the tokens of earlier logins, at the ingest;
// a login after the change is valid.
func TestPasswordChangeAndRemovalRevokeTokens(t *testing.T) {
	t.Parallel()
	m, _ := setup(t)
	ring := keyring(t, m)
	ctx := context.Background()
	require.NoError(t, m.AddUser(ctx, "ana", auth.RoleReader, "first-password"))
	require.NoError(t, m.AddUser(ctx, "bob", auth.RoleReader, "first-password"))
	earlier := time.Now().Add(-time.Minute)
	require.NoError(t, ring.CheckToken(loginAt("ana", earlier)))

	before, err := m.Store.User(ctx, "ana")
	require.NoError(t, err)
	require.NoError(t, m.SetPassword(ctx, "ana", "second-password"))
	after, err := m.Store.User(ctx, "ana")
	require.NoError(t, err)
	require.NoError(t, auth.CheckPassword(after.PasswordHash, "second-password"))
	require.False(t, after.PasswordChangedAt.Before(before.PasswordChangedAt))
	require.Eventually(t, func() bool { return ring.CheckToken(loginAt("ana", earlier)) != nil }, 5*time.Second, time.Millisecond)
	require.ErrorIs(t, ring.CheckToken(loginAt("ana", earlier)), auth.ErrRevokedToken)
	require.NoError(t, ring.CheckToken(loginAt("ana", time.Now().Add(2*time.Second))), "a login after the change")
	require.NoError(t, ring.CheckToken(loginAt("bob", earlier)), "another user's tokens")
	require.ErrorIs(t, m.SetPassword(ctx, "ana", "short"), auth.ErrBadPassword)

	require.NoError(t, m.RemoveUser(ctx, "bob"))
	_, err = m.Store.User(ctx, "bob")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Eventually(t, func() bool { return ring.CheckToken(loginAt("bob", earlier)) != nil }, 5*time.Second, time.Millisecond)

	require.ErrorIs(t, m.SetPassword(ctx, "nobody", "some-password"), store.ErrNotFound)
	require.ErrorIs(t, m.RemoveUser(ctx, "nobody"), store.ErrNotFound)
}

// A key is shown once and kept as its hash; the ingest accepts it with its scopes, and refuses
// it once revoked, by id or by name; a name shared by two active keys asks for the id.
func TestAPIKeys(t *testing.T) {
	t.Parallel()
	m, _ := setup(t)
	ring := keyring(t, m)
	ctx := context.Background()
	first, k1, err := m.CreateKey(ctx, "jenkins", []auth.Scope{auth.ScopeWrite, auth.ScopeRead})
	require.NoError(t, err)
	require.True(t, auth.IsAPIKey(first))
	require.Equal(t, auth.HashAPIKey(first), k1.Hash)
	require.Equal(t, first[:len(auth.APIKeyPrefix)+4], k1.Prefix)
	require.Equal(t, []string{"events:write", "metrics:read"}, k1.Scopes)
	require.Eventually(t, func() bool { _, err := ring.APIKey(first); return err == nil }, 5*time.Second, time.Millisecond)
	p, err := ring.APIKey(first)
	require.NoError(t, err)
	require.Equal(t, auth.Principal{Subject: "jenkins", APIKey: true, Scopes: []auth.Scope{auth.ScopeWrite, auth.ScopeRead}}, p)

	second, k2, err := m.CreateKey(ctx, "jenkins", []auth.Scope{auth.ScopeWrite})
	require.NoError(t, err)
	_, _, err = m.CreateKey(ctx, "empty", nil)
	require.Error(t, err)

	_, err = m.RevokeKey(ctx, "jenkins")
	require.ErrorIs(t, err, store.ErrAmbiguous)
	require.ErrorContains(t, err, "2 active API keys are named")
	revoked, err := m.RevokeKey(ctx, strconv.FormatInt(k1.ID, 10))
	require.NoError(t, err)
	require.Equal(t, k1.ID, revoked.ID)
	require.NotNil(t, revoked.RevokedAt)
	require.Eventually(t, func() bool { _, err := ring.APIKey(first); return err != nil }, 5*time.Second, time.Millisecond)
	_, err = ring.APIKey(first)
	require.ErrorIs(t, err, auth.ErrRevokedKey)

	revoked, err = m.RevokeKey(ctx, "jenkins")
	require.NoError(t, err, "one active key is left with the name")
	require.Equal(t, k2.ID, revoked.ID)
	require.Eventually(t, func() bool { _, err := ring.APIKey(second); return err != nil }, 5*time.Second, time.Millisecond)
	_, err = m.RevokeKey(ctx, "jenkins")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = m.RevokeKey(ctx, "999")
	require.ErrorIs(t, err, store.ErrNotFound)

	// Revoking a revoked key publishes the revocation again: a lost entry comes back.
	require.NoError(t, m.Bucket.Delete(ctx, auth.KeyEntry(k1.Hash)))
	_, err = m.RevokeKey(ctx, strconv.FormatInt(k1.ID, 10))
	require.NoError(t, err)
	require.True(t, entry[auth.KeyRecord](t, m, auth.KeyEntry(k1.Hash)).Revoked)
}

// A change the bucket does not take is not made in Postgres either: the ingest and the database
// never disagree.
func TestBucketFailureChangesNothing(t *testing.T) {
	t.Parallel()
	m, js := setup(t)
	ctx := context.Background()
	require.NoError(t, m.AddUser(ctx, "ana", auth.RoleReader, "first-password"))
	_, k, err := m.CreateKey(ctx, "jenkins", []auth.Scope{auth.ScopeWrite})
	require.NoError(t, err)

	require.NoError(t, js.DeleteKeyValue(ctx, stream.AuthBucket))
	for _, tc := range []struct {
		what    string
		err     error
		wantErr string
	}{
		{"revoke", func() error { _, err := m.RevokeKey(ctx, "jenkins"); return err }(), "(nothing was changed)"},
		{"create", func() error { _, _, err := m.CreateKey(ctx, "grafana", []auth.Scope{auth.ScopeRead}); return err }(), "(nothing was changed)"},
		{"passwd", m.SetPassword(ctx, "ana", "second-password"), "(nothing was changed)"},
		{"remove", m.RemoveUser(ctx, "ana"), "(nothing was changed)"},
		{"remove without a bucket", (&account.Manager{Store: m.Store}).RemoveUser(ctx, "ana"), account.ErrNoBucket.Error()},
	} {
		require.ErrorContains(t, tc.err, tc.wantErr, tc.what)
	}
	keys, err := m.Store.APIKeys(ctx)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Equal(t, k.ID, keys[0].ID)
	require.Nil(t, keys[0].RevokedAt)
	u, err := m.Store.User(ctx, "ana")
	require.NoError(t, err)
	require.NoError(t, auth.CheckPassword(u.PasswordHash, "first-password"))
}

// Sync rewrites a lost bucket from Postgres: every key, revoked ones as revoked, each user's
// last password change; a key Postgres does not know is deleted.
func TestSync(t *testing.T) {
	t.Parallel()
	m, js := setup(t)
	ctx := context.Background()
	_, active, err := m.CreateKey(ctx, "jenkins", []auth.Scope{auth.ScopeWrite})
	require.NoError(t, err)
	_, gone, err := m.CreateKey(ctx, "old", []auth.Scope{auth.ScopeRead})
	require.NoError(t, err)
	_, err = m.RevokeKey(ctx, "old")
	require.NoError(t, err)
	require.NoError(t, m.AddUser(ctx, "ana", auth.RoleReader, "first-password"))

	// The NATS store is lost; the new bucket has a key from elsewhere.
	require.NoError(t, js.DeleteKeyValue(ctx, stream.AuthBucket))
	m.Bucket, err = stream.EnsureAuthBucket(ctx, js, 1)
	require.NoError(t, err)
	stray := auth.KeyEntry(strings.Repeat("0", 64))
	_, err = m.Bucket.Put(ctx, stray, []byte(`{"id":7,"name":"stray","scopes":["events:write"]}`))
	require.NoError(t, err)
	_, err = m.Bucket.Put(ctx, auth.UserEntry("someone"), []byte(`{"tokens_after":1}`))
	require.NoError(t, err)

	synced, err := m.Sync(ctx)
	require.NoError(t, err)
	require.Equal(t, account.Synced{Keys: 2, Users: 1, Deleted: 1}, synced)
	require.Equal(t, auth.KeyRecord{ID: active.ID, Name: "jenkins", Scopes: []auth.Scope{auth.ScopeWrite}},
		entry[auth.KeyRecord](t, m, auth.KeyEntry(active.Hash)))
	require.True(t, entry[auth.KeyRecord](t, m, auth.KeyEntry(gone.Hash)).Revoked)
	u, err := m.Store.User(ctx, "ana")
	require.NoError(t, err)
	require.Equal(t, u.PasswordChangedAt.Unix(), entry[auth.UserRecord](t, m, auth.UserEntry("ana")).TokensAfter)
	_, err = m.Bucket.Get(ctx, stray)
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
	_, err = m.Bucket.Get(ctx, auth.UserEntry("someone"))
	require.NoError(t, err, "a user's record is kept: it may revoke a removed user's tokens")

	again, err := m.Sync(ctx)
	require.NoError(t, err)
	require.Equal(t, account.Synced{Keys: 2, Users: 1}, again, "a second sync deletes nothing")
	_, err = (&account.Manager{Store: m.Store}).Sync(ctx)
	require.ErrorIs(t, err, account.ErrNoBucket)
}
