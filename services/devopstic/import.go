package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/gitimport"
	"github.com/devopstic/devopstic/pkg/importer"
	"github.com/devopstic/devopstic/pkg/stream"
)

const importUsage = `
import commands (history from before the webhooks, sent through the stream; see docs/importing.md):
  import git PATH --pipeline ID [--branch B] [--since 90d] [--until T]
             [--deploys tags=GLOB | --deploys merges] [--environment production] [--dry-run]
                                  a local clone's commits, and its release tags or merges as deployments
  import github OWNER/REPO [--token $GITHUB_TOKEN] [--since 90d] [--pipeline ID] [--dry-run] [--restart]
                                  pull requests, reviews, deployments and incident issues from the REST API
`

// importHistory runs an import command: args[0] is "import".
func importHistory(ctx context.Context, cfg config.AllInOne, args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return fmt.Errorf("usage:%s", importUsage)
	}
	switch args[1] {
	case "git":
		return importGit(ctx, cfg, args[2:], stdout, stderr)
	case "github":
		return importGitHub(ctx, cfg, args[2:], stdout, stderr)
	}
	return fmt.Errorf("unknown import %q\nusage:%s", args[1], importUsage)
}

// parseInterspersed parses flags that may come before or after the one positional argument, as
// in `import git PATH --pipeline api`, and returns that argument.
func parseInterspersed(fs *flag.FlagSet, args []string, what string) (string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) != 1 {
		return "", fmt.Errorf("%s needs one %s, not %d arguments", fs.Name(), what, len(positional))
	}
	return positional[0], nil
}

func importGit(ctx context.Context, cfg config.AllInOne, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import git", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pipeline := fs.String("pipeline", "", "the pipeline the history belongs to (required): the pipeline_id of its live events")
	branch := fs.String("branch", "", "the branch whose history is imported (default: the one HEAD names)")
	since := fs.String("since", "90d", "import from: days back (90d), a date, an RFC 3339 time, or all")
	until := fs.String("until", "", "import up to (not including): as --since; default now. Set it to when live deploy events began")
	deploys := fs.String("deploys", "", "what a deployment is: tags=GLOB (release tags, such as tags=v*) or merges (each first-parent merge)")
	environment := fs.String("environment", "production", "the environment the deployments went to")
	dryRun := fs.Bool("dry-run", false, "print what would be sent (subject, id, event), send nothing")
	dir, err := parseInterspersed(fs, args, "repository path")
	if err != nil {
		return err
	}
	opts := gitimport.Options{Dir: dir, Branch: *branch, Pipeline: *pipeline, Environment: *environment}
	if opts.Deploys, err = gitimport.ParseDeploys(*deploys); err != nil {
		return err
	}
	now := time.Now()
	if opts.Window.Since, err = importer.ParseTime(*since, now); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if opts.Window.Until, err = importer.ParseTime(*until, now); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	if strings.TrimSpace(opts.Environment) == "" {
		return errors.New("--environment must not be empty")
	}

	sink, closeSink, err := importSink(ctx, cfg, *dryRun, stdout, "devopstic-import-git")
	if err != nil {
		return err
	}
	defer closeSink()
	progress := importer.NewProgress(stderr, "import git")
	res, err := gitimport.Import(ctx, opts, sink, stdout, progress, time.Now)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted after %d events (they are in the stream; running the same command again sends the rest and repeats nothing): %w", res.Events, err)
		}
		return err
	}
	if *dryRun {
		fmt.Fprintf(stdout, "dry run: %d events would be sent; nothing was\n", res.Events)
		return nil
	}
	fmt.Fprintf(stdout, "sent %d events to pipeline %s: %d commits, %d deployments to %s\n",
		res.Events, opts.Pipeline, len(res.Plan.Changes), len(res.Plan.Deployments), opts.Environment)
	return nil
}

// importSink is where an import's messages go: the stream, published as the ingest's NATS user
// (DEVOPSTIC_NATS_URL, else a running all-in-one's embedded server), or with dryRun a listing
// on stdout. The stream must exist: an import waits for nothing.
func importSink(ctx context.Context, cfg config.AllInOne, dryRun bool, stdout io.Writer, name string) (importer.Sink, func(), error) {
	if dryRun {
		return &importer.DryRun{W: stdout}, func() {}, nil
	}
	url := cfg.NATS.URL
	if url == "" {
		url = "nats://" + cfg.Embedded.NATSAddr
	}
	login, _, err := natsLogin(cfg, stream.RoleIngest)
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(url, append(login.Options(), nats.Name(name), nats.Timeout(5*time.Second))...)
	if refused := login.Refused(nil, err); refused != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w (the import publishes as the ingest's user, devopstic-ingest)", url, refused)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s (is DevOpstic running? start it with make run, or set DEVOPSTIC_NATS_URL): %w", url, err)
	}
	pub, err := stream.NewPublisher(nc, max(cfg.NATS.PublishTimeout, 5*time.Second))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	if err := streamExists(ctx, nc); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return &importer.Publisher{Stream: pub, Batch: 256, Retries: 10}, func() {
		_ = nc.FlushTimeout(2 * time.Second)
		nc.Close()
	}, nil
}

// streamExists checks, once, that the stream is there to take the import.
func streamExists(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("open JetStream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, stream.StreamName); err != nil {
		if last := nc.LastError(); errors.Is(last, nats.ErrPermissionViolation) {
			err = fmt.Errorf("%w (%w: is DEVOPSTIC_NATS_USER devopstic-ingest?)", err, last)
		}
		return fmt.Errorf("the stream %s at %s: %w (is DevOpstic running and set up?)", stream.StreamName, nc.ConnectedUrlRedacted(), err)
	}
	return nil
}
