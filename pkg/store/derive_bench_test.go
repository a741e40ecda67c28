package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/devopstic/devopstic/pkg/bench"
	"github.com/devopstic/devopstic/pkg/event"
	"github.com/devopstic/devopstic/pkg/fact"
	"github.com/devopstic/devopstic/pkg/store"
	"github.com/devopstic/devopstic/pkg/testenv"
)

// BenchmarkDeriveQueued derives what deferred writes of b.N events of the bench's hostile year
// queued, in two cases of one run: the tables as the writes left them, and the same after an
// ANALYZE taken while the derived tables were still empty (a replay or a rebuild that analyzes
// before deriving, or autovacuum passing at that moment). Their keys/s should be alike: a
// drain that reused plans made for empty tables scanned them whole for every key, and took
// 27 s instead of 1.3 s for the 61,000 keys of 100,000 events.
//
//	go test -run '^$' -bench DeriveQueued -benchtime 100000x ./pkg/store/
func BenchmarkDeriveQueued(b *testing.B) {
	for _, tc := range []struct {
		name    string
		analyze bool
	}{{"as-written", false}, {"analyzed-empty", true}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			dbURL := testenv.Postgres(b)
			st, err := store.Open(ctx, dbURL, 4)
			require.NoError(b, err)
			defer st.Close()
			var sets []fact.Set
			bench.History("derive", b.N, func(_ int, raw []byte) {
				e, err := event.Decode(raw, bench.YearEnd)
				require.NoError(b, err)
				sets = append(sets, event.Facts(e, raw, bench.YearEnd, uint64(len(sets)+1)))
			})
			for i := 0; i < len(sets); i += 1000 {
				require.NoError(b, st.Deferred().Write(ctx, sets[i:min(i+1000, len(sets))]))
			}
			if tc.analyze {
				pool, err := pgxpool.New(ctx, dbURL)
				require.NoError(b, err)
				_, err = pool.Exec(ctx, `ANALYZE`)
				pool.Close()
				require.NoError(b, err)
			}
			b.ResetTimer()
			n, err := st.DeriveQueued(ctx)
			require.NoError(b, err)
			b.StopTimer()
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "keys/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
