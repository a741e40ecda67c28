package auth

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
		require.NoError(t, l.Reserve("10.0.0.1", "admin"))
	}
	now = now.Add(10 * time.Second)
	err := l.Reserve("10.0.0.1", "admin")
	var lim *LimitError
	require.True(t, errors.As(err, &lim), "%v", err)
	require.ErrorIs(t, err, ErrRateLimited)
	require.Equal(t, "client address", lim.By)
	require.Equal(t, 50, lim.Seconds())
	require.Error(t, l.Reserve("10.0.0.1", "someone-else"), "the address is blocked for every username")

	// Another address may still log in as the user: the per-user limit is higher.
	require.NoError(t, l.Reserve("10.0.0.2", "admin"))
	require.NoError(t, l.Reserve("10.0.0.2", "admin"))
	err = l.Reserve("10.0.0.3", "admin")
	require.True(t, errors.As(err, &lim), "5 failures for admin from anywhere: %v", err)
	require.Equal(t, "username", lim.By)

	// A success forgets the username's failures, not the address's.
	l.Succeeded("10.0.0.2", "admin")
	require.NoError(t, l.Reserve("10.0.0.3", "admin"))
	require.Error(t, l.Reserve("10.0.0.1", "admin"))

	// A success takes back its own attempt only: 10.0.0.2 made 2 attempts, one of which
	// succeeded, so it has 2 of its 3 left, then none.
	require.NoError(t, l.Reserve("10.0.0.2", "bob"))
	require.NoError(t, l.Reserve("10.0.0.2", "bob"))
	require.Error(t, l.Reserve("10.0.0.2", "bob"))

	// The window ends a minute after the first attempt.
	now = now.Add(50 * time.Second)
	require.NoError(t, l.Reserve("10.0.0.1", "admin"))
}

// However many attempts arrive at once, at most the limit get through in a window.
func TestLimiterUnderConcurrency(t *testing.T) {
	t.Parallel()
	l := NewLimiter(LimiterConfig{PerClient: 10, PerUser: 7, Window: time.Minute})
	var passed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if l.Reserve(fmt.Sprintf("10.0.%d.1", i%3), "admin") == nil {
				passed.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	require.Equal(t, int64(7), passed.Load(), "the username's limit, from any number of addresses")
}

func TestLimiterIPv6ByPrefix(t *testing.T) {
	t.Parallel()
	l := NewLimiter(LimiterConfig{PerClient: 2, Window: time.Minute})
	require.NoError(t, l.Reserve("2001:db8:1:2::1", "a"))
	require.NoError(t, l.Reserve("2001:db8:1:2::ffff", "b"))
	require.Error(t, l.Reserve("2001:db8:1:2:abcd::1", "c"), "one /64 is one client")
	require.NoError(t, l.Reserve("2001:db8:1:3::1", "c"))
}

func TestLimiterOff(t *testing.T) {
	t.Parallel()
	l := NewLimiter(LimiterConfig{})
	for range 100 {
		require.NoError(t, l.Reserve("10.0.0.1", "admin"))
	}
	var none *Limiter
	require.NoError(t, none.Reserve("10.0.0.1", "admin"))
}
