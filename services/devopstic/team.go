package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/devopstic/devopstic/pkg/config"
)

const teamUsage = `
team commands (Postgres only; the same variables): a team owns pipelines, a pipeline belongs to
at most one team, and a team's figures are those of all its pipelines together, history included:
  team create NAME                      a new team, with no pipelines
  team list                             the teams and their pipelines
  team delete NAME                      its pipelines then belong to no team (their events stay)
  team add TEAM PIPELINE [--move]       give a pipeline to a team; --move takes it from another
  team remove TEAM PIPELINE             take a pipeline out of its team
`

// team runs a team command: args[0] is "team".
func team(ctx context.Context, cfg config.AllInOne, args []string, stdout io.Writer) error {
	usage := errors.New("usage: devopstic team create NAME | list | delete NAME | add TEAM PIPELINE [--move] | remove TEAM PIPELINE")
	if len(args) < 2 {
		return usage
	}
	sub, rest := args[1], args[2:]
	move := false
	if sub == "add" {
		var kept []string
		for _, a := range rest {
			switch a {
			case "--move", "-move":
				move = true
			default:
				kept = append(kept, a)
			}
		}
		rest = kept
	}
	want := map[string]int{"create": 1, "list": 0, "delete": 1, "add": 2, "remove": 2}
	n, ok := want[sub]
	if !ok || len(rest) != n {
		return usage
	}
	for _, a := range rest {
		if strings.HasPrefix(a, "-") {
			return fmt.Errorf("unknown flag %s\n%w", a, usage)
		}
	}
	st, closeStore, err := openStore(ctx, cfg, true, 2)
	if err != nil {
		return err
	}
	defer closeStore()

	switch sub {
	case "create":
		if err := st.CreateTeam(ctx, rest[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created team %s; give it pipelines with: devopstic team add %s PIPELINE\n", rest[0], shellQuote(rest[0]))
	case "list":
		teams, err := st.Teams(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "TEAM\tPIPELINES")
		for _, t := range teams {
			fmt.Fprintf(w, "%s\t%s\n", t.Name, strings.Join(t.Pipelines, ","))
		}
		return w.Flush()
	case "delete":
		n, err := st.DeleteTeam(ctx, rest[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted team %s; its %d pipelines belong to no team now\n", rest[0], n)
	case "add":
		from, err := st.AddPipeline(ctx, rest[0], rest[1], move)
		if err != nil {
			return err
		}
		if from != "" {
			fmt.Fprintf(stdout, "moved pipeline %s from team %s to team %s, its whole history with it\n", rest[1], from, rest[0])
		} else {
			fmt.Fprintf(stdout, "pipeline %s is in team %s\n", rest[1], rest[0])
		}
	case "remove":
		if err := st.RemovePipeline(ctx, rest[0], rest[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "took pipeline %s out of team %s\n", rest[1], rest[0])
	}
	return nil
}

// shellQuote quotes s for a shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
