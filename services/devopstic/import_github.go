package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/github"
	"github.com/devopstic/devopstic/pkg/githubimport"
	"github.com/devopstic/devopstic/pkg/importer"
)

func importGitHub(ctx context.Context, cfg config.AllInOne, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import github", flag.ContinueOnError)
	fs.SetOutput(stderr)
	token := fs.String("token", "", "a GitHub token that can read the repository (default: $GITHUB_TOKEN)")
	since := fs.String("since", "90d", "import from: days back (90d), a date, an RFC 3339 time, or all")
	pipeline := fs.String("pipeline", "", "the pipeline the history belongs to (default: the repository's owner/name, as the webhooks name it)")
	apiURL := fs.String("api-url", "https://api.github.com", "GitHub's REST API (GitHub Enterprise Server: https://HOST/api/v3)")
	dryRun := fs.Bool("dry-run", false, "print what would be sent (subject, id, delivery), send nothing")
	restart := fs.Bool("restart", false, "start over instead of resuming an unfinished import of the repository")
	perPage := fs.Int("per-page", 100, "items per page asked of GitHub (at most 100)")
	repo, err := parseInterspersed(fs, args, "repository (owner/name)")
	if err != nil {
		return err
	}
	if *token == "" {
		*token = os.Getenv("GITHUB_TOKEN")
	}
	sinceTime, err := importer.ParseTime(*since, time.Now())
	if err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	opts := githubimport.Options{
		Repo:  repo,
		Since: sinceTime,
		GitHub: github.Options{PipelineID: *pipeline, DeployWorkflows: cfg.GitHub.DeployWorkflows,
			DeployEnvironment: cfg.GitHub.DeployEnvironment, IncidentLabel: cfg.GitHub.IncidentLabel},
		PerPage: *perPage,
		Restart: *restart,
	}
	if !*dryRun {
		dir, err := filepath.Abs(cfg.Embedded.DataDir)
		if err != nil {
			return fmt.Errorf("DEVOPSTIC_DATA_DIR: %w", err)
		}
		opts.Checkpoint = githubimport.CheckpointPath(dir, repo)
	}

	sink, closeSink, err := importSink(ctx, cfg, *dryRun, stdout, "devopstic-import-github")
	if err != nil {
		return err
	}
	defer closeSink()
	progress := importer.NewProgress(stderr, "import github "+repo)
	client := &githubimport.Client{BaseURL: *apiURL, Token: *token, HTTP: &http.Client{Timeout: time.Minute}, Retries: 5,
		Waiting: func(reason string, d time.Duration) { progress.Say("waiting %s: %s", d.Round(time.Second), reason) }}
	res, err := githubimport.Import(ctx, opts, client, sink, progress, time.Now)
	if res.Resumed {
		fmt.Fprintf(stdout, "resumed the unfinished import of %s since %s (--restart starts over)\n", repo, res.Since.UTC().Format(time.RFC3339))
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "left out: %s\n", w)
	}
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, githubimport.ErrUnavailable) {
			return fmt.Errorf("stopped after %s sent: %w; run the same command again to go on where it stopped", res.Counts, err)
		}
		return err
	}
	if *dryRun {
		fmt.Fprintf(stdout, "dry run: %s would be sent; nothing was\n", res.Counts)
		return nil
	}
	fmt.Fprintf(stdout, "imported %s: %s sent, in %d requests\n", repo, res.Counts, client.Requests)
	return nil
}
