package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/devopstic/devopstic/pkg/config"
	"github.com/devopstic/devopstic/pkg/service"
	"github.com/devopstic/devopstic/pkg/stream"
)

// natsPasswordsPath is the embedded NATS server's password file, in the data directory.
func natsPasswordsPath(cfg config.Embedded) (string, error) {
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return "", fmt.Errorf("DEVOPSTIC_DATA_DIR: %w", err)
	}
	return filepath.Join(dir, stream.PasswordsFile), nil
}

// natsLogin is how a connection of role authenticates to the NATS at DEVOPSTIC_NATS_URL (or,
// for the operator commands, to a running all-in-one's embedded server): as
// DEVOPSTIC_NATS_USER with DEVOPSTIC_NATS_PASSWORD when they are set, else as the role's own
// user with its password from the data directory's password file (fromFile), else with no
// credentials, which NATS refuses.
func natsLogin(cfg config.AllInOne, role stream.Role) (l stream.Login, fromFile bool, err error) {
	if cfg.NATS.User != "" {
		return service.Login(cfg.NATS, role), false, nil
	}
	path, err := natsPasswordsPath(cfg.Embedded)
	if err != nil {
		return stream.Login{}, false, err
	}
	p, err := stream.ReadPasswords(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return stream.Login{Role: role}, false, nil
	case err != nil:
		return stream.Login{}, false, err
	case p[role] == "":
		return stream.Login{}, false, fmt.Errorf("NATS passwords: %s has no %s", path, role.PasswordVar())
	}
	return p.As(role), true, nil
}

// adminJetStream connects an operator command to NATS, as the admin: DEVOPSTIC_NATS_URL, or the
// embedded server of a running all-in-one (DEVOPSTIC_EMBEDDED_NATS_ADDR).
func adminJetStream(cfg config.AllInOne, name string) (*nats.Conn, jetstream.JetStream, error) {
	url := cfg.NATS.URL
	if url == "" {
		url = "nats://" + cfg.Embedded.NATSAddr
	}
	login, _, err := natsLogin(cfg, stream.RoleAdmin)
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(url, append(login.Options(), nats.Name(name), nats.Timeout(5*time.Second))...)
	if refused := login.Refused(nil, err); refused != nil {
		hint := ""
		if login.User == "" && cfg.NATS.URL == "" {
			path, _ := natsPasswordsPath(cfg.Embedded)
			hint = fmt.Sprintf("; or run it with the DEVOPSTIC_DATA_DIR of the running service, whose %s is not at %s", stream.PasswordsFile, path)
		}
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w%s", url, refused, hint)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s (is the service running? set DEVOPSTIC_NATS_URL): %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("open JetStream: %w", err)
	}
	return nc, js, nil
}

// setUpNATS creates or updates the stream and the auth bucket as the admin (login), waiting
// for NATS as long as ctx allows.
func setUpNATS(ctx context.Context, url string, login stream.Login, cfg config.NATS, log *slog.Logger) error {
	nc, err := stream.ConnectAs(url, "devopstic-setup", login)
	if err != nil {
		return err
	}
	defer nc.Close()
	return service.SetUp(ctx, nc, login, cfg, log)
}

// migrateNATS is `devopstic migrate`'s NATS half: with an external NATS (DEVOPSTIC_NATS_URL),
// the stream and the auth bucket, which the ingest and the writer wait for and may not create.
func migrateNATS(ctx context.Context, cfg config.AllInOne, log *slog.Logger) error {
	login, _, err := natsLogin(cfg, stream.RoleAdmin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := setUpNATS(ctx, cfg.NATS.URL, login, cfg.NATS, log); err != nil {
		return fmt.Errorf("set up NATS at %s: %w", cfg.NATS.URL, err)
	}
	return nil
}
