package auth

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// PasswordCost is bcrypt's cost for new passwords: about 60 ms a check on one core of a small
// server. A hash keeps its own cost, so raising this applies to passwords set afterwards.
const PasswordCost = 11

// Password length limits: bcrypt reads only the first 72 bytes, so longer is refused rather
// than silently truncated.
const (
	MinPassword = 8
	MaxPassword = 72
)

// MaxUsername is the longest username a login may name, in bytes: the database's users have at
// most 64 characters, the configured login at most this.
const MaxUsername = 128

// CheckUsername is nil when name can be a login's username: UTF-8 text of at most MaxUsername
// bytes without control characters. A login naming anything else is refused before it reaches
// the throttle (whose keys it would become) or the database (which refuses a NUL).
func CheckUsername(name string) error {
	switch {
	case len(name) > MaxUsername:
		return fmt.Errorf("at most %d bytes", MaxUsername)
	case !utf8.ValidString(name):
		return errors.New("not valid UTF-8")
	case strings.ContainsFunc(name, unicode.IsControl):
		return errors.New("contains a control character")
	}
	return nil
}

// ErrBadPassword is a new password that does not meet the limits.
var ErrBadPassword = errors.New("unacceptable password")

// HashPassword returns the bcrypt hash of a new password.
func HashPassword(password string) (string, error) {
	switch {
	case utf8.RuneCountInString(password) < MinPassword:
		return "", fmt.Errorf("%w: at least %d characters", ErrBadPassword, MinPassword)
	case len(password) > MaxPassword:
		return "", fmt.Errorf("%w: at most %d bytes", ErrBadPassword, MaxPassword)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), PasswordCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(hash), nil
}

// CheckPassword is nil when password matches hash.
func CheckPassword(hash, password string) error {
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)); err != nil {
		return fmt.Errorf("%w: wrong username or password", ErrUnauthorized)
	}
	return nil
}

var dummy struct {
	once sync.Once
	hash []byte
}

// CheckNoUser spends the time a password check takes, for a username that does not exist, so
// that timing does not tell which usernames do. It always fails.
func CheckNoUser(password string) error {
	dummy.once.Do(func() {
		dummy.hash, _ = bcrypt.GenerateFromPassword([]byte("no such user"), PasswordCost)
	})
	_ = bcrypt.CompareHashAndPassword(dummy.hash, []byte(password))
	return fmt.Errorf("%w: wrong username or password", ErrUnauthorized)
}
