package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Teams live in teams and team_pipelines (migration 0010): configuration, not facts of the
// stream, so a rebuild leaves them alone. A team's figures are resolved when they are asked
// for (MetricsQuery.Teams): moving a pipeline moves its whole history.

// Team is a team and the pipelines it owns, by name.
type Team struct {
	Name      string    `json:"name"`
	Pipelines []string  `json:"pipelines"`
	CreatedAt time.Time `json:"created_at"`
}

// MaxTeamName is the longest team name, as long as the longest pipeline id.
const MaxTeamName = 256

// ErrBadName means a team or pipeline name that cannot be kept.
var ErrBadName = errors.New("invalid name")

// ErrOtherTeam means the pipeline already belongs to another team.
var ErrOtherTeam = errors.New("belongs to another team")

// CheckTeamName refuses a name the teams table would: empty, longer than MaxTeamName, with
// spaces around it or a control character in it. Anything else is a name (quotes and angle
// brackets included: whoever shows one escapes it).
func CheckTeamName(name string) error {
	return checkName("team name", name)
}

func checkName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the %s is empty", ErrBadName, what)
	case len(name) > MaxTeamName:
		return fmt.Errorf("%w: the %s is %d bytes long; at most %d", ErrBadName, what, len(name), MaxTeamName)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: the %s %q starts or ends with a space", ErrBadName, what, name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: the %s %q holds a control character", ErrBadName, what, name)
	}
	return nil
}

// Teams lists every team with its pipelines, by name.
func (s *Store) Teams(ctx context.Context) ([]Team, error) {
	rows, _ := s.pool.Query(ctx, `
SELECT t.name,
       coalesce(array_agg(tp.pipeline_id ORDER BY tp.pipeline_id) FILTER (WHERE tp.pipeline_id IS NOT NULL), '{}'),
       t.created_at
FROM teams t
LEFT JOIN team_pipelines tp ON tp.team = t.name
GROUP BY t.name
ORDER BY t.name`)
	teams, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Team])
	if err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	return teams, nil
}

// CreateTeam adds a team with no pipelines (ErrExists when the name is taken).
func (s *Store) CreateTeam(ctx context.Context, name string) error {
	if err := CheckTeamName(name); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO teams (name) VALUES ($1)`, name)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("%w: team %q", ErrExists, name)
	}
	if err != nil {
		return fmt.Errorf("create team: %w", err)
	}
	return nil
}

// DeleteTeam removes a team (ErrNotFound when there is none); its pipelines belong to no team
// afterwards, their events untouched.
func (s *Store) DeleteTeam(ctx context.Context, name string) (pipelines int, err error) {
	err = s.inTx(ctx, "delete team", func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM team_pipelines WHERE team = $1`, name).Scan(&pipelines); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM teams WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: no team %q", ErrNotFound, name)
		}
		return nil
	})
	return pipelines, err
}

// AddPipeline gives pipeline to team. A pipeline in another team is moved when move is set
// (and from names the team it left), else refused with ErrOtherTeam. ErrNotFound when there is
// no such team. The pipeline need not have sent an event yet.
func (s *Store) AddPipeline(ctx context.Context, team, pipeline string, move bool) (from string, err error) {
	if err := checkName("pipeline id", pipeline); err != nil {
		return "", err
	}
	err = s.inTx(ctx, "add pipeline to team", func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM teams WHERE name = $1 FOR KEY SHARE)`, team).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("%w: no team %q", ErrNotFound, team)
		}
		// The row as it was, locked, then the change: a concurrent add cannot slip between.
		err := tx.QueryRow(ctx, `SELECT team FROM team_pipelines WHERE pipeline_id = $1 FOR UPDATE`, pipeline).Scan(&from)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			from = ""
		case err != nil:
			return err
		case from == team:
			return nil
		case !move:
			return fmt.Errorf("%w: pipeline %q is in team %q (move it with --move, or remove it there first)", ErrOtherTeam, pipeline, from)
		}
		_, err = tx.Exec(ctx, `INSERT INTO team_pipelines (pipeline_id, team) VALUES ($1, $2)
			ON CONFLICT (pipeline_id) DO UPDATE SET team = excluded.team, added_at = now()`, pipeline, team)
		return err
	})
	if err != nil {
		return "", err
	}
	if from == team {
		from = ""
	}
	return from, nil
}

// RemovePipeline takes pipeline out of team (ErrNotFound when it is not there).
func (s *Store) RemovePipeline(ctx context.Context, team, pipeline string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM team_pipelines WHERE team = $1 AND pipeline_id = $2`, team, pipeline)
	if err != nil {
		return fmt.Errorf("remove pipeline from team: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: pipeline %q is not in team %q", ErrNotFound, pipeline, team)
	}
	return nil
}

// resolvePipelines is the union of pipelines and the pipelines of teams, sorted, in tx's
// snapshot: an empty list (never nil) when they hold none, ErrNotFound naming the first team
// that does not exist.
func resolvePipelines(ctx context.Context, tx pgx.Tx, pipelines, teams []string) ([]string, error) {
	var unknown *string
	var union []string
	err := tx.QueryRow(ctx, `
SELECT (SELECT q.name FROM unnest($2::text[]) WITH ORDINALITY AS q(name, n)
        WHERE NOT EXISTS (SELECT FROM teams t WHERE t.name = q.name) ORDER BY q.n LIMIT 1),
       coalesce((SELECT array_agg(DISTINCT p ORDER BY p) FROM (
                   SELECT unnest($1::text[]) AS p
                   UNION
                   SELECT pipeline_id FROM team_pipelines WHERE team = ANY ($2::text[])) u), '{}')`,
		pipelines, teams).Scan(&unknown, &union)
	if err != nil {
		return nil, fmt.Errorf("resolve teams: %w", err)
	}
	if unknown != nil {
		return nil, fmt.Errorf("%w: no team %q", ErrNotFound, *unknown)
	}
	return union, nil
}
