package auth

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/stream"
	"github.com/devopstic/devopstic/pkg/testenv"
)

func TestAPIKeyFormat(t *testing.T) {
	t.Parallel()
	key, hash, err := NewAPIKey()
	require.NoError(t, err)
	require.True(t, IsAPIKey(key))
	require.Len(t, key, len(APIKeyPrefix)+43, "32 bytes in base64url")
	require.Len(t, hash, 64)
	require.Equal(t, hash, HashAPIKey(key))
	other, _, err := NewAPIKey()
	require.NoError(t, err)
	require.NotEqual(t, key, other)
	require.False(t, IsAPIKey("eyJhbGciOiJIUzI1NiJ9.e30.x"))
	require.Equal(t, "user.YW5hQGV4YW1wbGUuY29t", UserEntry("ana@example.com"))
}

// The keyring follows the bucket: a key put is accepted, a revocation refuses it within
// milliseconds, a deleted entry is unknown, a user's record revokes older logins.
func TestKeyringFollowsTheBucket(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc, err := nats.Connect(n.URL, n.Login(stream.RoleAdmin).Options()...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "AUTH_TEST", History: 1})
	require.NoError(t, err)

	put := func(entry string, v any) {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		_, err = kv.Put(ctx, entry, b)
		require.NoError(t, err)
	}
	before, beforeHash, err := NewAPIKey()
	require.NoError(t, err)
	put(KeyEntry(beforeHash), KeyRecord{ID: 1, Name: "jenkins", Scopes: []Scope{ScopeWrite}})
	_, err = kv.Put(ctx, KeyEntry(strings.Repeat("0", 64)), []byte("not json"))
	require.NoError(t, err)

	k := NewKeyring()
	_, err = k.APIKey(before)
	require.ErrorIs(t, err, ErrNotLoaded)
	watchCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- k.Watch(watchCtx, kv, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() { stop(); <-done })
	require.Eventually(t, k.Loaded, 10*time.Second, time.Millisecond)

	p, err := k.APIKey(before)
	require.NoError(t, err, "a key present when the watch starts")
	require.Equal(t, Principal{Subject: "jenkins", APIKey: true, Scopes: []Scope{ScopeWrite}}, p)
	_, err = k.APIKey(before + "x")
	require.ErrorIs(t, err, ErrUnknownKey)

	after, afterHash, err := NewAPIKey()
	require.NoError(t, err)
	put(KeyEntry(afterHash), KeyRecord{ID: 2, Name: "grafana", Scopes: []Scope{ScopeRead}})
	require.Eventually(t, func() bool { _, err := k.APIKey(after); return err == nil }, 5*time.Second, time.Millisecond)

	start := time.Now()
	put(KeyEntry(beforeHash), KeyRecord{ID: 1, Name: "jenkins", Scopes: []Scope{ScopeWrite}, Revoked: true})
	require.Eventually(t, func() bool { _, err := k.APIKey(before); return err != nil }, 5*time.Second, time.Millisecond)
	t.Logf("revocation reached the keyring %s after the put", time.Since(start))
	_, err = k.APIKey(before)
	require.ErrorIs(t, err, ErrRevokedKey)

	require.NoError(t, kv.Delete(ctx, KeyEntry(afterHash)))
	require.Eventually(t, func() bool { _, err := k.APIKey(after); return err != nil }, 5*time.Second, time.Millisecond)
	_, err = k.APIKey(after)
	require.ErrorIs(t, err, ErrUnknownKey)

	login := Claims{OrigIat: jwtDate(time.Unix(1000, 0))}
	login.Subject = "ana"
	require.NoError(t, k.CheckToken(login))
	put(UserEntry("ana"), UserRecord{TokensAfter: 1001})
	require.Eventually(t, func() bool { return k.CheckToken(login) != nil }, 5*time.Second, time.Millisecond)
	require.ErrorIs(t, k.CheckToken(login), ErrRevokedToken)
	login.OrigIat = jwtDate(time.Unix(1001, 0))
	require.ErrorIs(t, k.CheckToken(login), ErrRevokedToken, "a login in the second of the change may have preceded it")
	login.OrigIat = jwtDate(time.Unix(1002, 0))
	require.NoError(t, k.CheckToken(login), "a login after the change is valid")
}

func jwtDate(t time.Time) *jwt.NumericDate { return jwt.NewNumericDate(t) }
