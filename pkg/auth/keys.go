package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// APIKeyPrefix starts every API key, so that a key is recognisable (in a secret scanner, or
// by the API telling a key from a token).
const APIKeyPrefix = "dvp_"

// NewAPIKey returns a new key (the prefix and 32 random bytes, base64url) and its hash.
func NewAPIKey() (key, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generate API key: %w", err)
	}
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	return key, HashAPIKey(key), nil
}

// HashAPIKey is what is kept of a key: its SHA-256, in hex. A key has 256 random bits, so a
// slow hash (bcrypt, argon2) would add nothing: there is no dictionary to try.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// IsAPIKey tells an API key from a token by its prefix.
func IsAPIKey(credential string) bool {
	return strings.HasPrefix(credential, APIKeyPrefix)
}

// The auth bucket holds, per API key and per user, what the ingest needs to verify requests
// without Postgres: keyed "apikey.<sha256 hex>" and "user.<base64url name>".

// KeyRecord is an API key's entry in the auth bucket.
type KeyRecord struct {
	ID      int64   `json:"id"`
	Name    string  `json:"name"`
	Scopes  []Scope `json:"scopes"`
	Revoked bool    `json:"revoked"`
}

// UserRecord is a database user's entry in the auth bucket: tokens of logins up to
// TokensAfter (Unix seconds, that second included: token times are whole seconds, so a login in
// the same second may have come just before) are refused. Removing a user or changing a
// password sets it.
type UserRecord struct {
	TokensAfter int64 `json:"tokens_after"`
}

// KeyEntry is the bucket key of the API key whose hash is hash.
func KeyEntry(hash string) string { return "apikey." + hash }

// UserEntry is the bucket key of the user name (encoded, as names may hold characters that
// bucket keys may not).
func UserEntry(name string) string {
	return "user." + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// Errors of refused API keys.
var (
	ErrUnknownKey = fmt.Errorf("%w: unknown API key", ErrUnauthorized)
	ErrRevokedKey = fmt.Errorf("%w: the API key was revoked", ErrUnauthorized)
)

// ErrNotLoaded means the keyring has not read the auth bucket yet (NATS unreachable since the
// start): an API key can be neither accepted nor refused; the client should retry.
var ErrNotLoaded = errors.New("API keys are not loaded yet (the auth bucket in NATS is unreachable): retry shortly")

// Keyring is the ingest's in-memory copy of the auth bucket, kept current by Watch: API keys
// and token revocations are checked against it with no Postgres round trip, so the write path
// keeps working while Postgres is down.
type Keyring struct {
	mu     sync.RWMutex
	keys   map[string]KeyRecord // by hash
	users  map[string]time.Time // by UserEntry: TokensAfter
	loaded bool
}

// NewKeyring returns an empty keyring; it knows nothing until Watch has loaded the bucket.
func NewKeyring() *Keyring {
	return &Keyring{keys: map[string]KeyRecord{}, users: map[string]time.Time{}}
}

// Loaded reports whether the bucket's content has been read once.
func (k *Keyring) Loaded() bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.loaded
}

// APIKey verifies key and returns who it is.
func (k *Keyring) APIKey(key string) (Principal, error) {
	hash := HashAPIKey(key)
	k.mu.RLock()
	rec, ok := k.keys[hash]
	loaded := k.loaded
	k.mu.RUnlock()
	switch {
	case !ok && !loaded:
		return Principal{}, ErrNotLoaded
	case !ok:
		return Principal{}, ErrUnknownKey
	case rec.Revoked:
		return Principal{}, ErrRevokedKey
	}
	return Principal{Subject: rec.Name, APIKey: true, Scopes: rec.Scopes}, nil
}

// CheckToken refuses a token whose user was removed or changed password after its login.
func (k *Keyring) CheckToken(c Claims) error {
	k.mu.RLock()
	after, ok := k.users[UserEntry(c.Subject)]
	k.mu.RUnlock()
	if ok && !c.OrigIat.After(after) {
		return ErrRevokedToken
	}
	return nil
}

// Watch keeps the keyring equal to kv until ctx is done or the watch ends (the connection
// closed); the caller watches again. It replaces the whole content once the bucket's current
// values are read, then applies each change as it comes.
func (k *Keyring) Watch(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch the auth bucket: %w", err)
	}
	defer func() { _ = w.Stop() }()
	keys, users := map[string]KeyRecord{}, map[string]time.Time{}
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the auth bucket's watch ended")
			}
			if e == nil { // the current values are all read
				k.mu.Lock()
				k.keys, k.users, k.loaded = keys, users, true
				k.mu.Unlock()
				initial = false
				log.Info("auth bucket loaded", "api_keys", len(keys), "users", len(users))
				continue
			}
			if initial {
				apply(keys, users, e, log)
				continue
			}
			k.mu.Lock()
			apply(k.keys, k.users, e, log)
			k.mu.Unlock()
		}
	}
}

func apply(keys map[string]KeyRecord, users map[string]time.Time, e jetstream.KeyValueEntry, log *slog.Logger) {
	deleted := e.Operation() != jetstream.KeyValuePut
	switch {
	case strings.HasPrefix(e.Key(), "apikey."):
		hash := strings.TrimPrefix(e.Key(), "apikey.")
		var rec KeyRecord
		if deleted {
			delete(keys, hash)
		} else if err := json.Unmarshal(e.Value(), &rec); err != nil {
			// Fail closed: a key whose record cannot be read is refused.
			delete(keys, hash)
			log.Error("unreadable API key record: the key is refused", "entry", e.Key(), "error", err)
		} else {
			keys[hash] = rec
		}
	case strings.HasPrefix(e.Key(), "user."):
		var rec UserRecord
		if deleted {
			delete(users, e.Key())
		} else if err := json.Unmarshal(e.Value(), &rec); err != nil {
			// Fail closed: the user's tokens are refused until the record is rewritten.
			users[e.Key()] = time.Unix(1<<40, 0)
			log.Error("unreadable user record: the user's tokens are refused", "entry", e.Key(), "error", err)
		} else {
			users[e.Key()] = time.Unix(rec.TokensAfter, 0)
		}
	}
}
