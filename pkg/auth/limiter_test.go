package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLimiter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLimiter(LimiterConfig{PerClient: 3, PerUser: 5, Window: time.Minute})
	l.now = func() time.Time { return now }

	for range 3 {
		require.NoError(t, l.Allow("10.0.0.1", "admin"))
		l.Failed("10.0.0.1", "admin")
	}
	now = now.Add(10 * time.Second)
	err := l.Allow("10.0.0.1", "admin")
	var lim *LimitError
	require.True(t, errors.As(err, &lim), "%v", err)
	require.ErrorIs(t, err, ErrRateLimited)
	require.Equal(t, "client address", lim.By)
	require.Equal(t, 50, lim.Seconds())
	require.Error(t, l.Allow("10.0.0.1", "someone-else"), "the address is blocked for every username")

	// Another address may still log in as the user: the per-user limit is higher.
	require.NoError(t, l.Allow("10.0.0.2", "admin"))
	l.Failed("10.0.0.2", "admin")
	l.Failed("10.0.0.2", "admin")
	err = l.Allow("10.0.0.3", "admin")
	require.True(t, errors.As(err, &lim), "5 failures for admin from anywhere: %v", err)
	require.Equal(t, "username", lim.By)

	// A success forgets the username's failures, not the address's.
	l.Succeeded("admin")
	require.NoError(t, l.Allow("10.0.0.3", "admin"))
	require.Error(t, l.Allow("10.0.0.1", "admin"))

	// The window ends a minute after the first failure.
	now = now.Add(50 * time.Second)
	require.NoError(t, l.Allow("10.0.0.1", "admin"))
}

func TestLimiterIPv6ByPrefix(t *testing.T) {
	t.Parallel()
	l := NewLimiter(LimiterConfig{PerClient: 2, Window: time.Minute})
	l.Failed("2001:db8:1:2::1", "a")
	l.Failed("2001:db8:1:2::ffff", "b")
	require.Error(t, l.Allow("2001:db8:1:2:abcd::1", "c"), "one /64 is one client")
	require.NoError(t, l.Allow("2001:db8:1:3::1", "c"))
}

func TestLimiterOff(t *testing.T) {
	t.Parallel()
	l := NewLimiter(LimiterConfig{})
	for range 100 {
		l.Failed("10.0.0.1", "admin")
	}
	require.NoError(t, l.Allow("10.0.0.1", "admin"))
	var none *Limiter
	require.NoError(t, none.Allow("10.0.0.1", "admin"))
}
