// Package store is DevOpstic's Postgres: schema migrations, the writer's idempotent batch
// writes, and the reads behind the HTTP API.
//
// Writes are upserts whose merge is commutative and idempotent (LEAST for first-seen times,
// GREATEST for last-seen times, a total order for "latest wins"), so the tables are a pure
// function of the set of events written, whatever their order and however often each comes.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/devopstic/devopstic/migrations"
)

// Store is the Postgres database, shared by the writer and the read API.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects a pool to the database at url. It does not wait for the server: a Store opened
// while Postgres is down works once Postgres is back.
func Open(ctx context.Context, url string, maxConns int32) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	// The metrics bucket days, weeks and months in UTC (DORA.md), whatever the server's zone.
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	// Plan every execution with its parameters: the metrics functions filter on "all pipelines
	// or these", which a generic plan cannot turn into an index scan on the pipeline.
	cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	// JIT compiling the metrics queries costs about a second on a small machine, for queries
	// that run in milliseconds: never worth it here.
	cfg.ConnConfig.RuntimeParams["jit"] = "off"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create database pool: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Close closes every connection.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// Migrate brings the schema at url up to the newest migration. Services call it on start;
// golang-migrate's advisory lock makes concurrent starts safe.
func Migrate(ctx context.Context, url string) error {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("parse database URL: %w", err)
	}
	db := stdlib.OpenDB(*cfg.ConnConfig)
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("connect to the database to migrate: %w", err)
	}
	driver, err := migratepgx.WithInstance(db, &migratepgx.Config{})
	if err != nil {
		return fmt.Errorf("open migration driver: %w", err)
	}
	src, err := iofs.New(migrations.FS, ".")
	if err != nil {
		return fmt.Errorf("open embedded migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", driver)
	if err != nil {
		return fmt.Errorf("prepare migrations: %w", err)
	}
	defer m.Close()
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("run migrations: %w", err)
	}
	return nil
}

// IsTransient reports whether err is worth retrying as is: the database is unreachable,
// restarting or shutting down, or the transaction lost a deadlock or serialization race.
// Anything else (a constraint or a bad value) will fail again on retry.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "40001", pgErr.Code == "40P01": // serialization failure, deadlock
			return true
		case len(pgErr.Code) >= 2 && (pgErr.Code[:2] == "08" || pgErr.Code[:2] == "53" || pgErr.Code[:2] == "57"):
			// connection exceptions, insufficient resources, operator intervention (shutdown)
			return true
		}
		return false
	}
	// No verdict from the server on the data: the connection failed or dropped, so the
	// transaction did not commit and retrying it is safe.
	return true
}
