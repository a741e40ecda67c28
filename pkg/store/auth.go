package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The users and API keys live in the schema devopstic_auth (migration 0005), out of reach of
// the read-only role, which is granted schema public only.

// User is a login of POST /tokens kept in the database.
type User struct {
	Name              string
	Role              string
	PasswordHash      string
	CreatedAt         time.Time
	PasswordChangedAt time.Time
}

// ErrExists means a row with the same name is already there.
var ErrExists = errors.New("already exists")

// User returns the user called name, or ErrNotFound.
func (s *Store) User(ctx context.Context, name string) (User, error) {
	var u User
	err := s.pool.QueryRow(ctx, `SELECT name, role, password_hash, created_at, password_changed_at
		FROM devopstic_auth.users WHERE name = $1`, name).
		Scan(&u.Name, &u.Role, &u.PasswordHash, &u.CreatedAt, &u.PasswordChangedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("%w: no user %q", ErrNotFound, name)
	}
	if err != nil {
		return User{}, fmt.Errorf("read user: %w", err)
	}
	return u, nil
}

// Users lists the users by name.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, role, password_hash, created_at, password_changed_at
		FROM devopstic_auth.users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	users, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) {
		var u User
		err := r.Scan(&u.Name, &u.Role, &u.PasswordHash, &u.CreatedAt, &u.PasswordChangedAt)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// AddUser adds u, or fails with ErrExists. then runs inside the transaction, before it
// commits: the change is committed only if then succeeds (it publishes to the auth bucket).
func (s *Store) AddUser(ctx context.Context, u User, then func(context.Context) error) error {
	return s.inTx(ctx, "add user", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO devopstic_auth.users (name, role, password_hash) VALUES ($1, $2, $3)`,
			u.Name, u.Role, u.PasswordHash)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" {
			return fmt.Errorf("%w: user %q", ErrExists, u.Name)
		}
		if err != nil {
			return err
		}
		return then(ctx)
	})
}

// SetPassword replaces a user's password hash (ErrNotFound when there is no such user); then
// runs as in AddUser.
func (s *Store) SetPassword(ctx context.Context, name, hash string, then func(context.Context) error) error {
	return s.inTx(ctx, "set password", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE devopstic_auth.users SET password_hash = $2, password_changed_at = now() WHERE name = $1`, name, hash)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: no user %q", ErrNotFound, name)
		}
		return then(ctx)
	})
}

// RemoveUser deletes a user (ErrNotFound when there is no such user); then runs as in AddUser.
func (s *Store) RemoveUser(ctx context.Context, name string, then func(context.Context) error) error {
	return s.inTx(ctx, "remove user", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM devopstic_auth.users WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: no user %q", ErrNotFound, name)
		}
		return then(ctx)
	})
}

// APIKey is an API key as the database keeps it: never the key, only its hash.
type APIKey struct {
	ID        int64
	Name      string
	Scopes    []string
	Hash      string // SHA-256, hex
	Prefix    string // the key's first characters, to recognise it
	CreatedAt time.Time
	RevokedAt *time.Time
}

const apiKeyColumns = `id, name, scopes, key_hash, prefix, created_at, revoked_at`

func scanAPIKey(r pgx.CollectableRow) (APIKey, error) {
	var k APIKey
	err := r.Scan(&k.ID, &k.Name, &k.Scopes, &k.Hash, &k.Prefix, &k.CreatedAt, &k.RevokedAt)
	return k, err
}

// AddAPIKey stores k (its ID and CreatedAt are assigned) and returns it; then runs inside the
// transaction with the stored key, before it commits.
func (s *Store) AddAPIKey(ctx context.Context, k APIKey, then func(context.Context, APIKey) error) (APIKey, error) {
	var added APIKey
	err := s.inTx(ctx, "add API key", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `INSERT INTO devopstic_auth.api_keys (name, scopes, key_hash, prefix)
			VALUES ($1, $2, $3, $4) RETURNING `+apiKeyColumns, k.Name, k.Scopes, k.Hash, k.Prefix)
		if err != nil {
			return err
		}
		if added, err = pgx.CollectExactlyOneRow(rows, scanAPIKey); err != nil {
			return err
		}
		return then(ctx, added)
	})
	return added, err
}

// APIKeys lists every API key, revoked ones included, by id.
func (s *Store) APIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM devopstic_auth.api_keys ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, scanAPIKey)
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	return keys, nil
}

// ErrAmbiguous means a name matches several rows.
var ErrAmbiguous = errors.New("ambiguous")

// RevokeAPIKey revokes the key with id, or else the one active key called name (ErrNotFound,
// or ErrAmbiguous when several are). Revoking a revoked key changes nothing but runs then
// again (which republishes the revocation). then runs inside the transaction, before it
// commits.
func (s *Store) RevokeAPIKey(ctx context.Context, id int64, name string, then func(context.Context, APIKey) error) (APIKey, error) {
	var revoked APIKey
	err := s.inTx(ctx, "revoke API key", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE devopstic_auth.api_keys SET revoked_at = coalesce(revoked_at, now())
			WHERE id = $1 OR (name = $2 AND revoked_at IS NULL) RETURNING `+apiKeyColumns, id, name)
		if err != nil {
			return err
		}
		keys, err := pgx.CollectRows(rows, scanAPIKey)
		switch {
		case err != nil:
			return err
		case len(keys) == 0 && name != "":
			return fmt.Errorf("%w: no active API key named %q", ErrNotFound, name)
		case len(keys) == 0:
			return fmt.Errorf("%w: no API key with id %d", ErrNotFound, id)
		case len(keys) > 1:
			ids := make([]int64, len(keys))
			for i, k := range keys {
				ids[i] = k.ID
			}
			return fmt.Errorf("%w: %d active API keys are named %q (ids %v): revoke one by its id", ErrAmbiguous, len(keys), name, ids)
		}
		revoked = keys[0]
		return then(ctx, revoked)
	})
	return revoked, err
}

func (s *Store) inTx(ctx context.Context, what string, fn func(pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, s.pool, fn)
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExists) && !errors.Is(err, ErrAmbiguous) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return err
}
