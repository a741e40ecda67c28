package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// Checkpoint is how far a replay got (replay_checkpoints).
type Checkpoint struct {
	Name       string
	StartSeq   uint64
	EndSeq     uint64
	LastSeq    uint64 // the last stream sequence applied; StartSeq-1 before the first batch
	Applied    int64
	StartedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt *time.Time
}

// Checkpoint returns the checkpoint of the replay called name, and whether there is one.
func (s *Store) Checkpoint(ctx context.Context, name string) (Checkpoint, bool, error) {
	rows, err := s.pool.Query(ctx, checkpointSelect+` WHERE name = $1`, name)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("read replay checkpoint: %w", err)
	}
	cps, err := scanCheckpoints(rows)
	if err != nil || len(cps) == 0 {
		return Checkpoint{}, false, err
	}
	return cps[0], true, nil
}

// Checkpoints lists the replays that were started and have not finished.
func (s *Store) Checkpoints(ctx context.Context) ([]Checkpoint, error) {
	rows, err := s.pool.Query(ctx, checkpointSelect+` WHERE finished_at IS NULL ORDER BY updated_at`)
	if err != nil {
		return nil, fmt.Errorf("read replay checkpoints: %w", err)
	}
	return scanCheckpoints(rows)
}

const checkpointSelect = `SELECT name, start_seq, end_seq, last_seq, applied, started_at, updated_at, finished_at FROM replay_checkpoints`

func scanCheckpoints(rows pgx.Rows) ([]Checkpoint, error) {
	var out []Checkpoint
	for rows.Next() {
		var c Checkpoint
		var start, end, last int64
		if err := rows.Scan(&c.Name, &start, &end, &last, &c.Applied, &c.StartedAt, &c.UpdatedAt, &c.FinishedAt); err != nil {
			return nil, fmt.Errorf("read replay checkpoints: %w", err)
		}
		c.StartSeq, c.EndSeq, c.LastSeq = uint64(start), uint64(end), uint64(last)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read replay checkpoints: %w", err)
	}
	return out, nil
}

// SaveCheckpoint records c, starting the replay over when it had finished before.
func (s *Store) SaveCheckpoint(ctx context.Context, c Checkpoint) error {
	_, err := s.pool.Exec(ctx, `
INSERT INTO replay_checkpoints (name, start_seq, end_seq, last_seq, applied, started_at, updated_at, finished_at)
VALUES ($1, $2, $3, $4, $5, now(), now(), $6)
ON CONFLICT (name) DO UPDATE SET start_seq = EXCLUDED.start_seq, end_seq = EXCLUDED.end_seq,
    last_seq = EXCLUDED.last_seq, applied = EXCLUDED.applied, updated_at = now(), finished_at = EXCLUDED.finished_at,
    started_at = CASE WHEN replay_checkpoints.finished_at IS NULL THEN replay_checkpoints.started_at ELSE now() END`,
		c.Name, int64(c.StartSeq), int64(c.EndSeq), int64(c.LastSeq), c.Applied, c.FinishedAt)
	if err != nil {
		return fmt.Errorf("save replay checkpoint: %w", err)
	}
	return nil
}

// DeadLetters lists the dead letters, oldest stream message first, without their data.
func (s *Store) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	return s.deadLetters(ctx, `SELECT stream_seq, subject, headers, ''::bytea, reason, deliveries, failed_at FROM dead_letters ORDER BY stream_seq`)
}

// DeadLetter returns the dead letter of stream message seq, with its data.
func (s *Store) DeadLetter(ctx context.Context, seq uint64) (DeadLetter, error) {
	dls, err := s.deadLetters(ctx, `SELECT stream_seq, subject, headers, data, reason, deliveries, failed_at FROM dead_letters WHERE stream_seq = $1`, int64(seq))
	if err != nil {
		return DeadLetter{}, err
	}
	if len(dls) == 0 {
		return DeadLetter{}, fmt.Errorf("%w: no dead letter for stream sequence %d", ErrNotFound, seq)
	}
	return dls[0], nil
}

// ErrNotFound means the row asked for does not exist.
var ErrNotFound = errors.New("not found")

// DeadLettersFrom returns up to limit dead letters with data, from stream sequence after on.
func (s *Store) DeadLettersFrom(ctx context.Context, after uint64, limit int) ([]DeadLetter, error) {
	return s.deadLetters(ctx, `SELECT stream_seq, subject, headers, data, reason, deliveries, failed_at FROM dead_letters
WHERE stream_seq > $1 ORDER BY stream_seq LIMIT $2`, int64(after), limit)
}

func (s *Store) deadLetters(ctx context.Context, query string, args ...any) ([]DeadLetter, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	var out []DeadLetter
	for rows.Next() {
		var dl DeadLetter
		var seq int64
		if err := rows.Scan(&seq, &dl.Subject, &dl.Headers, &dl.Data, &dl.Reason, &dl.Deliveries, &dl.FailedAt); err != nil {
			return nil, fmt.Errorf("read dead letters: %w", err)
		}
		dl.StreamSeq = uint64(seq)
		out = append(out, dl)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	return out, nil
}

// DeleteDeadLetters deletes the dead letters of the given stream sequences (all of them when
// seqs is nil) and returns how many it deleted.
func (s *Store) DeleteDeadLetters(ctx context.Context, seqs []uint64) (int64, error) {
	query, args := `DELETE FROM dead_letters`, []any{}
	if seqs != nil {
		ids := make([]int64, len(seqs))
		for i, q := range seqs {
			ids[i] = int64(q)
		}
		query, args = `DELETE FROM dead_letters WHERE stream_seq = ANY($1)`, []any{ids}
	}
	tag, err := s.pool.Exec(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("delete dead letters: %w", err)
	}
	return tag.RowsAffected(), nil
}

// RowCounts counts the rows of every table the stream feeds, and of dead_letters, in one
// snapshot.
func (s *Store) RowCounts(ctx context.Context) (map[string]int64, error) {
	counts := map[string]int64{}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		for _, t := range append(slices.Clone(StreamTables), "dead_letters") {
			var n int64
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{t}.Sanitize()).Scan(&n); err != nil {
				return fmt.Errorf("count %s: %w", t, err)
			}
			counts[t] = n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	return counts, nil
}

// EventsBefore counts the events whose stream sequence is before seq, and gives the oldest.
func (s *Store) EventsBefore(ctx context.Context, seq uint64) (oldest uint64, n int64, err error) {
	var min *int64
	err = s.pool.QueryRow(ctx, `SELECT min(stream_seq), count(*) FROM events WHERE stream_seq < $1`, int64(seq)).Scan(&min, &n)
	if err != nil {
		return 0, 0, fmt.Errorf("count events before stream sequence %d: %w", seq, err)
	}
	if min != nil {
		oldest = uint64(*min)
	}
	return oldest, n, nil
}
