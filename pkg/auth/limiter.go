package auth

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"time"
)

// ErrRateLimited means too many failed logins: the client must wait (LimitError.RetryAfter).
var ErrRateLimited = errors.New("too many failed logins")

// LimitError is a refused login attempt and how long to wait.
type LimitError struct {
	// By is what hit its limit: "client address" or "username".
	By         string
	RetryAfter time.Duration
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s from this %s; retry in %d s", ErrRateLimited, e.By, e.Seconds())
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *LimitError) Is(target error) bool { return target == ErrRateLimited }

// Seconds is RetryAfter in whole seconds, rounded up, for a Retry-After header.
func (e *LimitError) Seconds() int { return int(math.Ceil(e.RetryAfter.Seconds())) }

// LimiterConfig shapes a Limiter. A limit of 0 turns that limit off.
type LimiterConfig struct {
	// PerClient is the failed logins a client address may make in a window.
	PerClient int
	// PerUser is the failed logins a username may take in a window, from any address. Keep it
	// well above PerClient, so that one client cannot lock a user out.
	PerUser int
	Window  time.Duration
}

// Limiter throttles failed logins per client address and per username: once either has made
// its limit of failed attempts within a window, further attempts are refused, right or wrong,
// until the window (which starts at its first attempt) ends. Each process counts on its own: N ingest replicas
// allow up to N times the limit.
type Limiter struct {
	cfg     LimiterConfig
	mu      sync.Mutex
	clients map[string]*window
	users   map[string]*window
	now     func() time.Time
}

type window struct {
	start    time.Time
	failures int
}

// pruneAt is the map size above which expired entries are swept.
const pruneAt = 10_000

// NewLimiter returns a Limiter with cfg.
func NewLimiter(cfg LimiterConfig) *Limiter {
	return &Limiter{cfg: cfg, clients: map[string]*window{}, users: map[string]*window{}, now: time.Now}
}

// Reserve counts a login attempt by username from ip, before its password is checked, or
// refuses it with a *LimitError when the client or the username has used up its attempts in
// the window. Counting before the check, under one lock, is what bounds guesses made at the
// same time: of N concurrent attempts at most the limit get through, whatever N. The caller
// reports a right password with Succeeded; a wrong one needs nothing more.
func (l *Limiter) Reserve(ip, username string) error {
	if l == nil || l.cfg.Window <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	client := clientKey(ip)
	if wait := l.blocked(l.clients, client, l.cfg.PerClient, now); wait > 0 {
		return &LimitError{By: "client address", RetryAfter: wait}
	}
	if wait := l.blocked(l.users, username, l.cfg.PerUser, now); wait > 0 {
		return &LimitError{By: "username", RetryAfter: wait}
	}
	if l.cfg.PerClient > 0 {
		l.count(l.clients, client, now)
	}
	if l.cfg.PerUser > 0 {
		l.count(l.users, username, now)
	}
	return nil
}

// Succeeded takes back the attempt Reserve counted for ip, and forgets the username's
// failures. The client's other failures stay: an attacker with an account of their own must
// not reset their count by logging in between guesses.
func (l *Limiter) Succeeded(ip, username string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.clients[clientKey(ip)]; ok && w.failures > 0 {
		w.failures--
	}
	delete(l.users, username)
}

func (l *Limiter) blocked(m map[string]*window, key string, limit int, now time.Time) time.Duration {
	w, ok := m[key]
	if limit <= 0 || !ok {
		return 0
	}
	end := w.start.Add(l.cfg.Window)
	if !now.Before(end) {
		delete(m, key)
		return 0
	}
	if w.failures < limit {
		return 0
	}
	return end.Sub(now)
}

func (l *Limiter) count(m map[string]*window, key string, now time.Time) {
	w, ok := m[key]
	if !ok || !now.Before(w.start.Add(l.cfg.Window)) {
		if len(m) >= pruneAt {
			for k, w := range m {
				if !now.Before(w.start.Add(l.cfg.Window)) {
					delete(m, k)
				}
			}
		}
		// A copy: the caller's string may be borrowed from a request buffer that the next
		// request overwrites, and a map key must never change.
		m[strings.Clone(key)] = &window{start: now, failures: 1}
		return
	}
	w.failures++
}

// clientKey is the address a client is counted by: an IPv6 client by its /64, which one
// machine usually owns whole (counting single addresses would let it rotate through 2^64).
func clientKey(ip string) string {
	parsed := net.ParseIP(ip)
	if parsed == nil || parsed.To4() != nil {
		return ip
	}
	return parsed.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
