// Package account changes who may use DevOpstic: the users who log in with POST /tokens and the
// API keys of CI pipelines (`devopstic user` and `devopstic apikey`).
//
// Postgres keeps users and keys (pkg/store). What an ingest needs to verify a request without
// Postgres, a key's record and the time before which a user's tokens are refused, is also put
// in the auth bucket that every ingest follows (auth.Keyring). The put runs inside the database
// transaction: a change commits only once the ingest can know it, and a failed put changes
// nothing.
package account

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/devopstic/devopstic/pkg/auth"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/stream"
)

// ErrConfiguredLogin means a database user would take the name of the configured login.
var ErrConfiguredLogin = errors.New("is the configured login (DEVOPSTIC_USERNAME): choose another name")

// ErrNoBucket means a change that must reach the ingest was asked of a Manager without a bucket.
var ErrNoBucket = errors.New("the auth bucket is not open")

// Manager changes users and API keys in Store and Bucket together.
type Manager struct {
	Store *store.Store
	// Bucket is the auth bucket (stream.AuthBucket). It may be nil for AddUser, which has no
	// token to revoke, and for reading Store.
	Bucket jetstream.KeyValue
	// ConfiguredLogin is the username of DEVOPSTIC_USERNAME, which no database user may take:
	// POST /tokens would check its password first.
	ConfiguredLogin string
}

// CheckNewUser refuses a name AddUser would refuse before the database does, so that a command
// can say so before asking for a password.
func (m *Manager) CheckNewUser(name string) error {
	if name != "" && name == m.ConfiguredLogin {
		return fmt.Errorf("%q %w", name, ErrConfiguredLogin)
	}
	return nil
}

// AddUser adds a user who logs in with password (store.ErrExists when the name is taken,
// auth.ErrBadPassword when the password is too short or long).
func (m *Manager) AddUser(ctx context.Context, name string, role auth.Role, password string) error {
	if err := m.CheckNewUser(name); err != nil {
		return err
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return err
	}
	return m.Store.AddUser(ctx, store.User{Name: name, Role: string(role), PasswordHash: hash},
		func(context.Context) error { return nil })
}

// SetPassword changes a user's password (store.ErrNotFound when there is no such user) and
// refuses the tokens of the user's earlier logins.
func (m *Manager) SetPassword(ctx context.Context, name, password string) error {
	hash, err := auth.HashPassword(password)
	if err != nil {
		return err
	}
	return m.Store.SetPassword(ctx, name, hash, m.revokeTokens(name))
}

// RemoveUser removes a user (store.ErrNotFound when there is no such user) and refuses the
// tokens the user holds.
func (m *Manager) RemoveUser(ctx context.Context, name string) error {
	return m.Store.RemoveUser(ctx, name, m.revokeTokens(name))
}

// revokeTokens publishes that the user's logins until now are over.
func (m *Manager) revokeTokens(name string) func(context.Context) error {
	return func(ctx context.Context) error {
		return m.put(ctx, auth.UserEntry(name), auth.UserRecord{TokensAfter: time.Now().Unix()})
	}
}

// CreateKey makes an API key called name with scopes, and returns the key, which is kept
// nowhere (only its hash is), and its stored record.
func (m *Manager) CreateKey(ctx context.Context, name string, scopes []auth.Scope) (key string, k store.APIKey, err error) {
	if len(scopes) == 0 {
		return "", store.APIKey{}, errors.New("an API key needs at least one scope")
	}
	key, hash, err := auth.NewAPIKey()
	if err != nil {
		return "", store.APIKey{}, err
	}
	names := make([]string, len(scopes))
	for i, s := range scopes {
		names[i] = string(s)
	}
	k, err = m.Store.AddAPIKey(ctx, store.APIKey{Name: name, Scopes: names, Hash: hash, Prefix: key[:len(auth.APIKeyPrefix)+4]}, m.putKey)
	if err != nil {
		return "", store.APIKey{}, err
	}
	return key, k, nil
}

// RevokeKey revokes the key whose id is idOrName (all digits), or else the one active key of
// that name: store.ErrNotFound when there is none, store.ErrAmbiguous when several share it.
// Revoking a revoked key publishes its revocation again.
func (m *Manager) RevokeKey(ctx context.Context, idOrName string) (store.APIKey, error) {
	var id int64
	name := idOrName
	if n, err := strconv.ParseInt(idOrName, 10, 64); err == nil {
		id, name = n, ""
	}
	return m.Store.RevokeAPIKey(ctx, id, name, m.putKey)
}

// putKey publishes a key's record.
func (m *Manager) putKey(ctx context.Context, k store.APIKey) error {
	scopes := make([]auth.Scope, len(k.Scopes))
	for i, s := range k.Scopes {
		scopes[i] = auth.Scope(s)
	}
	return m.put(ctx, auth.KeyEntry(k.Hash), auth.KeyRecord{ID: k.ID, Name: k.Name, Scopes: scopes, Revoked: k.RevokedAt != nil})
}

func (m *Manager) put(ctx context.Context, entry string, v any) error {
	if m.Bucket == nil {
		return ErrNoBucket
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := m.Bucket.Put(ctx, entry, b); err != nil {
		return fmt.Errorf("write the key-value bucket %s (nothing was changed): %w", stream.AuthBucket, err)
	}
	return nil
}

// Synced is what Sync wrote.
type Synced struct {
	Keys, Users int // records written
	Deleted     int // key entries that Postgres does not know, deleted
}

// Sync rewrites the bucket from Postgres, after a NATS store was lost: every key (revoked ones
// as revoked), each user's last password change, and deletes the keys Postgres does not have. A
// user removed before the bucket was lost cannot be restored: rotate DEVOPSTIC_JWT_SECRET to end
// such tokens early.
func (m *Manager) Sync(ctx context.Context) (Synced, error) {
	var s Synced
	if m.Bucket == nil {
		return s, ErrNoBucket
	}
	keys, err := m.Store.APIKeys(ctx)
	if err != nil {
		return s, err
	}
	known := map[string]bool{}
	for _, k := range keys {
		if err := m.putKey(ctx, k); err != nil {
			return s, err
		}
		known[auth.KeyEntry(k.Hash)] = true
		s.Keys++
	}
	users, err := m.Store.Users(ctx)
	if err != nil {
		return s, err
	}
	for _, u := range users {
		if err := m.put(ctx, auth.UserEntry(u.Name), auth.UserRecord{TokensAfter: u.PasswordChangedAt.Unix()}); err != nil {
			return s, err
		}
		s.Users++
	}
	lister, err := m.Bucket.ListKeys(ctx)
	if err != nil {
		return s, fmt.Errorf("list the key-value bucket: %w", err)
	}
	for entry := range lister.Keys() {
		if strings.HasPrefix(entry, auth.KeyEntry("")) && !known[entry] {
			if err := m.Bucket.Delete(ctx, entry); err != nil {
				_ = lister.Stop()
				return s, fmt.Errorf("delete %s from the key-value bucket: %w", entry, err)
			}
			s.Deleted++
		}
	}
	return s, nil
}
