package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/term"

	"github.com/devopstic/devopstic/pkg/auth"
	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/store"
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
	st     *store.Store
	kv     jetstream.KeyValue // nil for the commands that only read Postgres
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
	env, closeEnv, err := openAccess(ctx, cfg, needNATS)
	if err != nil {
		return err
	}
	defer closeEnv()
	env.stdin, env.stdout, env.stderr = stdin, stdout, stderr
	if args[0] == "user" {
		return env.user(ctx, args[1], args[2:])
	}
	return env.apikey(ctx, args[1], args[2:])
}

// openAccess opens Postgres (the local one of "make run" when DEVOPSTIC_DATABASE_URL is unset
// and there is one), migrated, and, when needNATS, the auth bucket.
func openAccess(ctx context.Context, cfg config.AllInOne, needNATS bool) (*accessEnv, func(), error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	dbURL := cfg.Database.ConnString()
	if cfg.Database.URL == "" {
		if dataDir, err := filepath.Abs(cfg.Embedded.DataDir); err == nil {
			if _, err := os.Stat(filepath.Join(dataDir, "postgres", "PG_VERSION")); err == nil {
				cfg.Embedded.DataDir = dataDir
				cluster, err := startLocalPostgres(ctx, cfg.Embedded, io.Discard)
				if err != nil {
					return nil, nil, err
				}
				closers = append(closers, func() { _ = cluster.StopIfStarted() })
				dbURL = cluster.URL("devopstic")
			}
		}
	}
	if err := store.Migrate(ctx, dbURL); err != nil {
		closeAll()
		return nil, nil, err
	}
	st, err := store.Open(ctx, dbURL, 2)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	closers = append(closers, st.Close)
	env := &accessEnv{cfg: cfg, st: st}
	if needNATS {
		nc, err := connectAdmin(cfg, "devopstic-access")
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		closers = append(closers, nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("open JetStream: %w", err)
		}
		if env.kv, err = stream.EnsureAuthBucket(ctx, js, cfg.NATS.StreamReplicas); err != nil {
			closeAll()
			return nil, nil, err
		}
	}
	return env, closeAll, nil
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
		if name == e.cfg.Auth.Username {
			return fmt.Errorf("%q is the configured login (DEVOPSTIC_USERNAME): choose another name", name)
		}
		hash, err := e.newPassword(name)
		if err != nil {
			return err
		}
		if err := e.st.AddUser(ctx, store.User{Name: name, Role: string(r), PasswordHash: hash}, noop); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "added user %s (%s)\n", name, r)
	case "list":
		users, err := e.st.Users(ctx)
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
		hash, err := e.newPassword(name)
		if err != nil {
			return err
		}
		if err := e.st.SetPassword(ctx, name, hash, e.revokeTokens(name)); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "changed the password of %s; tokens from earlier logins are refused\n", name)
	case "remove":
		if err := e.st.RemoveUser(ctx, name, e.revokeTokens(name)); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "removed user %s; their tokens are refused\n", name)
	default:
		return errors.New(usage)
	}
	return nil
}

func noop(context.Context) error { return nil }

// revokeTokens publishes that the user's logins until now are over; it runs inside the
// database transaction, so that the change commits only once the ingest can know it.
func (e *accessEnv) revokeTokens(name string) func(context.Context) error {
	return func(ctx context.Context) error {
		return e.put(ctx, auth.UserEntry(name), auth.UserRecord{TokensAfter: time.Now().Unix()})
	}
}

func (e *accessEnv) put(ctx context.Context, entry string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := e.kv.Put(ctx, entry, b); err != nil {
		return fmt.Errorf("write the key-value bucket %s (nothing was changed): %w", stream.AuthBucket, err)
	}
	return nil
}

// newPassword reads a new password for name: twice, without echo, from a terminal; else one
// line of standard input (for scripts: printf '%s\n' "$PW" | devopstic user add ana).
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
	return auth.HashPassword(password)
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
		keys, err := e.st.APIKeys(ctx)
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
		var id int64
		var name string
		if n, err := strconv.ParseInt(args[0], 10, 64); err == nil {
			id = n
		} else {
			name = args[0]
		}
		k, err := e.st.RevokeAPIKey(ctx, id, name, e.putKey)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "revoked API key %d (%s); the ingest refuses it within seconds\n", k.ID, k.Name)
		return nil
	case "sync":
		return e.sync(ctx)
	default:
		return errors.New(usage)
	}
}

// createKey makes a key and prints it, alone, on standard output (KEY=$(devopstic apikey
// create ...)); the rest goes to standard error. The key is never stored: only its hash.
func (e *accessEnv) createKey(ctx context.Context, name, scope string) error {
	scopes, err := auth.ParseScopes(scope)
	if err != nil {
		return err
	}
	key, hash, err := auth.NewAPIKey()
	if err != nil {
		return err
	}
	names := make([]string, len(scopes))
	for i, s := range scopes {
		names[i] = string(s)
	}
	k, err := e.st.AddAPIKey(ctx, store.APIKey{Name: name, Scopes: names, Hash: hash, Prefix: key[:len(auth.APIKeyPrefix)+4]}, e.putKey)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "created API key %d (%s, %s). It is shown once, below: keep it in your CI's secret store.\n", k.ID, k.Name, scope)
	fmt.Fprintln(e.stdout, key)
	return nil
}

// putKey publishes a key's record to the bucket; it runs inside the database transaction.
func (e *accessEnv) putKey(ctx context.Context, k store.APIKey) error {
	scopes := make([]auth.Scope, len(k.Scopes))
	for i, s := range k.Scopes {
		scopes[i] = auth.Scope(s)
	}
	return e.put(ctx, auth.KeyEntry(k.Hash), auth.KeyRecord{ID: k.ID, Name: k.Name, Scopes: scopes, Revoked: k.RevokedAt != nil})
}

// sync rewrites the bucket from Postgres: every key (revoked ones as revoked), each user's
// last password change, and deletes the keys Postgres does not have. A user removed before the
// bucket was lost cannot be restored: rotate DEVOPSTIC_JWT_SECRET to end such tokens early.
func (e *accessEnv) sync(ctx context.Context) error {
	keys, err := e.st.APIKeys(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, k := range keys {
		if err := e.putKey(ctx, k); err != nil {
			return err
		}
		known[auth.KeyEntry(k.Hash)] = true
	}
	users, err := e.st.Users(ctx)
	if err != nil {
		return err
	}
	for _, u := range users {
		if err := e.put(ctx, auth.UserEntry(u.Name), auth.UserRecord{TokensAfter: u.PasswordChangedAt.Unix()}); err != nil {
			return err
		}
	}
	lister, err := e.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list the key-value bucket: %w", err)
	}
	deleted := 0
	for entry := range lister.Keys() {
		if strings.HasPrefix(entry, "apikey.") && !known[entry] {
			if err := e.kv.Delete(ctx, entry); err != nil {
				return fmt.Errorf("delete %s from the key-value bucket: %w", entry, err)
			}
			deleted++
		}
	}
	fmt.Fprintf(e.stdout, "wrote %d API keys and %d users to %s; deleted %d unknown keys\n", len(keys), len(users), stream.AuthBucket, deleted)
	return nil
}
