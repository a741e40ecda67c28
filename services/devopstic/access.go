package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/devopstic/devopstic/pkg/account"
	"github.com/devopstic/devopstic/pkg/auth"
	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/stream"
)

const accessUsage = `
access commands (the same variables; a password is read from the terminal without echo, or as
one line from standard input, never from the command line):
  user add NAME [--role admin|reader]   add a user who logs in with POST /tokens (default: reader)
  user list | remove NAME | passwd NAME remove a user or change a password; either also
                                        revokes the user's tokens within seconds
  apikey create --name NAME --scope events:write|metrics:read[,...]
                                        print a new API key (once: only its hash is kept)
  apikey list | revoke ID|NAME          revoked keys stop working within seconds
  apikey sync                           rewrite the key-value bucket from Postgres (after a
                                        NATS store was lost)
`

// accessEnv is what the user and apikey commands work with.
type accessEnv struct {
	cfg    config.AllInOne
	acc    *account.Manager // its Bucket is nil for the commands that only need Postgres
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// access runs a user or apikey command: args[0] is its name.
func access(ctx context.Context, cfg config.AllInOne, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return fmt.Errorf("usage:%s", accessUsage)
	}
	// Writing the bucket needs NATS; adding and listing users need Postgres only.
	needNATS := args[0] == "apikey" && args[1] != "list" || args[0] == "user" && (args[1] == "remove" || args[1] == "passwd")
	acc, closeAll, err := openAccounts(ctx, cfg, needNATS)
	if err != nil {
		return err
	}
	defer closeAll()
	env := &accessEnv{cfg: cfg, acc: acc, stdin: stdin, stdout: stdout, stderr: stderr}
	if args[0] == "user" {
		return env.user(ctx, args[1], args[2:])
	}
	return env.apikey(ctx, args[1], args[2:])
}

// openAccounts opens Postgres (openStore), migrated, and, when needNATS, the auth bucket.
func openAccounts(ctx context.Context, cfg config.AllInOne, needNATS bool) (*account.Manager, func(), error) {
	st, closeStore, err := openStore(ctx, cfg, true, 2)
	if err != nil {
		return nil, nil, err
	}
	acc := &account.Manager{Store: st, ConfiguredLogin: cfg.Auth.Username}
	if !needNATS {
		return acc, closeStore, nil
	}
	nc, js, err := adminJetStream(cfg, "devopstic-access")
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	closeAll := func() { nc.Close(); closeStore() }
	if acc.Bucket, err = stream.EnsureAuthBucket(ctx, js, cfg.NATS.StreamReplicas); err != nil {
		closeAll()
		return nil, nil, err
	}
	return acc, closeAll, nil
}

func (e *accessEnv) user(ctx context.Context, sub string, args []string) error {
	const usage = "usage: devopstic user add NAME [--role admin|reader] | list | remove NAME | passwd NAME"
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	role := fs.String("role", "reader", "admin (reads and posts) or reader (reads)")
	// Flags may come after the name: user add ana --role admin.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return errors.New(usage)
	}
	if sub != "list" && name == "" {
		return errors.New(usage)
	}
	switch sub {
	case "add":
		r, err := auth.ParseRole(*role)
		if err != nil {
			return err
		}
		if err := e.acc.CheckNewUser(name); err != nil {
			return err
		}
		password, err := e.newPassword(name)
		if err != nil {
			return err
		}
		if err := e.acc.AddUser(ctx, name, r, password); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "added user %s (%s)\n", name, r)
	case "list":
		users, err := e.acc.Store.Users(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tROLE\tCREATED\tPASSWORD CHANGED")
		for _, u := range users {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", u.Name, u.Role, u.CreatedAt.UTC().Format(time.RFC3339), u.PasswordChangedAt.UTC().Format(time.RFC3339))
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if e.cfg.Auth.Username != "" {
			fmt.Fprintf(e.stdout, "and the configured login %s (admin, DEVOPSTIC_USERNAME)\n", e.cfg.Auth.Username)
		}
	case "passwd":
		password, err := e.newPassword(name)
		if err != nil {
			return err
		}
		if err := e.acc.SetPassword(ctx, name, password); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "changed the password of %s; tokens from earlier logins are refused\n", name)
	case "remove":
		if err := e.acc.RemoveUser(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "removed user %s; their tokens are refused\n", name)
	default:
		return errors.New(usage)
	}
	return nil
}

// newPassword reads a new password for name: twice, without echo, from a terminal; else one
// line of standard input (for scripts: printf '%s\n' "$PW" | devopstic user add ana). The
// account package checks its length and hashes it.
func (e *accessEnv) newPassword(name string) (string, error) {
	var password string
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		first, err := prompt(f, e.stderr, "Password for "+name+": ")
		if err != nil {
			return "", err
		}
		again, err := prompt(f, e.stderr, "Repeat it: ")
		if err != nil {
			return "", err
		}
		if first != again {
			return "", errors.New("the two passwords differ; nothing was changed")
		}
		password = first
	} else {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read the password from standard input: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
		if password == "" {
			return "", errors.New("no password on standard input (one line; the terminal prompts when there is one)")
		}
	}
	return password, nil
}

func prompt(f *os.File, out io.Writer, text string) (string, error) {
	fmt.Fprint(out, text)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(out)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	return string(b), nil
}

func (e *accessEnv) apikey(ctx context.Context, sub string, args []string) error {
	const usage = "usage: devopstic apikey create --name NAME --scope events:write|metrics:read[,...] | list | revoke ID|NAME | sync"
	switch sub {
	case "create":
		fs := flag.NewFlagSet("apikey create", flag.ContinueOnError)
		fs.SetOutput(e.stderr)
		name := fs.String("name", "", "what uses the key, e.g. jenkins (required)")
		scope := fs.String("scope", "", "events:write (post events), metrics:read (read), or both comma-separated (required)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if *name == "" || *scope == "" || fs.NArg() > 0 {
			return errors.New("usage: devopstic apikey create --name NAME --scope events:write|metrics:read[,...]")
		}
		return e.createKey(ctx, *name, *scope)
	case "list":
		keys, err := e.acc.Store.APIKeys(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tNAME\tSCOPES\tKEY\tCREATED\tREVOKED")
		for _, k := range keys {
			revoked := "-"
			if k.RevokedAt != nil {
				revoked = k.RevokedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s…\t%s\t%s\n", k.ID, k.Name, strings.Join(k.Scopes, ","), k.Prefix, k.CreatedAt.UTC().Format(time.RFC3339), revoked)
		}
		return w.Flush()
	case "revoke":
		if len(args) != 1 {
			return errors.New("usage: devopstic apikey revoke ID|NAME")
		}
		k, err := e.acc.RevokeKey(ctx, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "revoked API key %d (%s); the ingest refuses it within seconds\n", k.ID, k.Name)
		return nil
	case "sync":
		n, err := e.acc.Sync(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "wrote %d API keys and %d users to %s; deleted %d unknown keys\n", n.Keys, n.Users, stream.AuthBucket, n.Deleted)
		return nil
	default:
		return errors.New(usage)
	}
}

// createKey makes a key and prints it, alone, on standard output (KEY=$(devopstic apikey
// create ...)); the rest goes to standard error.
func (e *accessEnv) createKey(ctx context.Context, name, scope string) error {
	scopes, err := auth.ParseScopes(scope)
	if err != nil {
		return err
	}
	key, k, err := e.acc.CreateKey(ctx, name, scopes)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "created API key %d (%s, %s). It is shown once, below: keep it in your CI's secret store.\n", k.ID, k.Name, scope)
	fmt.Fprintln(e.stdout, key)
	return nil
}
