package stream

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// PasswordsFile is the file, in the all-in-one's data directory (DEVOPSTIC_DATA_DIR), that
// keeps the embedded NATS server's passwords, one line per role in the form
// DEVOPSTIC_NATS_INGEST_PASSWORD=...: the variables deployments/nats/*.conf read, so that a
// shell can load it (set -a; . .data/nats-passwords.env) for the nats CLI.
const PasswordsFile = "nats-passwords.env"

// LocalPasswords returns the passwords kept at path, generating whichever are missing (all of
// them the first time) and keeping them there, readable by its owner only. A file that others
// may read is refused rather than used: its passwords may have been read.
func LocalPasswords(path string) (Passwords, error) {
	p, err := ReadPasswords(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if p == nil {
		p = Passwords{}
	}
	missing := false
	for _, r := range Roles {
		if p[r] == "" {
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return nil, fmt.Errorf("generate a NATS password: %w", err)
			}
			// Hex, so that a NATS configuration file reading it from the environment takes it
			// as a string (a value such as 4k or -x would not be).
			p[r] = hex.EncodeToString(b)
			missing = true
		}
	}
	if missing {
		if err := writePasswords(path, p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// ReadPasswords reads the passwords kept at path (fs.ErrNotExist when there is no file); a
// role without a line has none.
func ReadPasswords(path string) (Passwords, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("NATS passwords: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("NATS passwords: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("NATS passwords: %s may be read by other users (mode %#o): run chmod 600 on it, or delete it to have new passwords generated", path, perm)
	}
	byVar := map[string]Role{}
	for _, r := range Roles {
		byVar[r.PasswordVar()] = r
	}
	p := Passwords{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		if r, ok := byVar[strings.TrimSpace(k)]; ok {
			p[r] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("NATS passwords: read %s: %w", path, err)
	}
	return p, nil
}

// writePasswords replaces the file at path, atomically and with mode 0600 from the start.
func writePasswords(path string, p Passwords) error {
	var b bytes.Buffer
	b.WriteString("# The passwords of DevOpstic's embedded NATS server's users, generated once and reused on\n" +
		"# every start. The user of each is devopstic-<role> (devopstic-admin for the nats CLI).\n" +
		"# Keep this file private (mode 0600); delete it, and restart, for new passwords.\n")
	for _, r := range Roles {
		fmt.Fprintf(&b, "%s=%s\n", r.PasswordVar(), p[r])
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("NATS passwords: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".nats-passwords-*") // mode 0600
	if err != nil {
		return fmt.Errorf("NATS passwords: %w", err)
	}
	_, err = tmp.Write(b.Bytes())
	err = errors.Join(err, tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("NATS passwords: keep them in %s: %w", path, err)
	}
	return nil
}
