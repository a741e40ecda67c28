package oracle

import (
	"math/big"
	"slices"
	"time"
)

// The percentiles DORA.md asks for, exactly.
var (
	half   = big.NewRat(1, 2)
	ninety = big.NewRat(9, 10)
)

// percentile is the continuous percentile p of values, as Postgres's percentile_cont defines it:
// at position p×(n−1) of the sorted values, interpolating linearly between the two around it.
// Exact, in nanoseconds; nil when there are no values.
func percentile(values []time.Duration, p *big.Rat) *big.Rat {
	if len(values) == 0 {
		return nil
	}
	v := slices.Clone(values)
	slices.Sort(v)
	pos := new(big.Rat).Mul(p, big.NewRat(int64(len(v)-1), 1))
	lo := new(big.Int).Quo(pos.Num(), pos.Denom()).Int64() // floor: pos is not negative
	frac := new(big.Rat).Sub(pos, new(big.Rat).SetInt64(lo))
	if frac.Sign() == 0 {
		return new(big.Rat).SetInt64(int64(v[lo]))
	}
	a, b := new(big.Rat).SetInt64(int64(v[lo])), new(big.Rat).SetInt64(int64(v[lo+1]))
	return a.Add(a, frac.Mul(frac, b.Sub(b, a)))
}

// mean is the exact mean of values in nanoseconds; nil when there are none.
func mean(values []time.Duration) *big.Rat {
	if len(values) == 0 {
		return nil
	}
	sum := new(big.Int)
	for _, v := range values {
		sum.Add(sum, big.NewInt(int64(v)))
	}
	return new(big.Rat).SetFrac(sum, big.NewInt(int64(len(values))))
}

// seconds is nanos in whole seconds, rounded to nearest (halves away from zero); nil stays nil.
func seconds(nanos *big.Rat) *int64 {
	if nanos == nil {
		return nil
	}
	s := roundHalfAway(new(big.Rat).Quo(nanos, big.NewRat(int64(time.Second), 1))).Int64()
	return &s
}

// roundHalfAway rounds to the nearest integer, halves away from zero (as Postgres's round on
// numeric).
func roundHalfAway(x *big.Rat) *big.Int {
	abs := new(big.Rat).Abs(x)
	abs.Add(abs, half)
	n := new(big.Int).Quo(abs.Num(), abs.Denom())
	if x.Sign() < 0 {
		n.Neg(n)
	}
	return n
}

// round4 is x rounded to 4 decimals.
func round4(x *big.Rat) float64 {
	n := roundHalfAway(new(big.Rat).Mul(x, big.NewRat(10000, 1)))
	f, _ := new(big.Rat).SetFrac(n, big.NewInt(10000)).Float64()
	return f
}

// ratio is a/b rounded to 4 decimals; nil when b is 0 (no values, no rate).
func ratio(a, b int64) *float64 {
	if b == 0 {
		return nil
	}
	r := round4(big.NewRat(a, b))
	return &r
}

// Tiers, rated on exact values, not on the rounded figures shown (docs/metrics.md), against
// docs/metrics.md's benchmark tables, written here from those tables (DORA.md's for 2023, the
// 2024 report's performance levels for 2024) and not from the migration that pkg/dora reads.
// The rule is the docs': a value is rated at the best tier whose bound it meets, low when it
// meets none, whether or not the bounds get looser from tier to tier.
const (
	elite  = "elite"
	high   = "high"
	medium = "medium"
	low    = "low"
)

// tierBounds are what a value must meet for one tier.
type tierBounds struct {
	tier          string
	perDayAtLeast *big.Rat
	leadBelow     time.Duration
	failureAtMost *big.Rat
	restoreBelow  time.Duration
}

// benchmark is one set of tiers, best first.
type benchmark struct {
	label string
	tiers []tierBounds
}

const (
	anHour = time.Hour
	aDay   = 24 * time.Hour
)

// benchmarks are the sets by ?benchmark=; "" is the newest.
var benchmarks = func() map[string]benchmark {
	m := map[string]benchmark{
		// DORA.md: per_day ≥ 1, < 1 day, ≤ 5%, < 1 hour | per_week ≥ 1, < 1 week, ≤ 10%, < 1 day |
		// ≥ 1 per 30 days, < 30 days, ≤ 15%, < 1 week.
		"2023": {"DORA 2023", []tierBounds{
			{elite, big.NewRat(1, 1), aDay, big.NewRat(5, 100), anHour},
			{high, big.NewRat(1, 7), 7 * aDay, big.NewRat(10, 100), aDay},
			{medium, big.NewRat(1, 30), 30 * aDay, big.NewRat(15, 100), 7 * aDay},
		}},
		// The 2024 report: on demand, < 1 day, 5%, < 1 hour | daily to weekly, one day to one
		// week, 20%, < 1 day | weekly to monthly, one week to one month, 10%, < 1 day.
		"2024": {"DORA 2024", []tierBounds{
			{elite, big.NewRat(1, 1), aDay, big.NewRat(5, 100), anHour},
			{high, big.NewRat(1, 7), 7 * aDay, big.NewRat(20, 100), aDay},
			{medium, big.NewRat(1, 30), 30 * aDay, big.NewRat(10, 100), aDay},
		}},
	}
	m[""] = m["2024"]
	return m
}()

// best is the first tier whose bound meets says is met, else low.
func (b benchmark) best(meets func(tierBounds) bool) string {
	for _, t := range b.tiers {
		if meets(t) {
			return t.tier
		}
	}
	return low
}

// frequencyTier rates successful deployments per day: no deployments is a known zero, low.
func (b benchmark) frequencyTier(perDay *big.Rat) string {
	return b.best(func(t tierBounds) bool { return perDay.Cmp(t.perDayAtLeast) >= 0 })
}

// failureTier rates failed ÷ attempts against each tier's "at most"; no attempts, no tier.
func (b benchmark) failureTier(failed, attempts int64) *string {
	if attempts == 0 {
		return nil
	}
	rate := big.NewRat(failed, attempts)
	t := b.best(func(t tierBounds) bool { return rate.Cmp(t.failureAtMost) <= 0 })
	return &t
}

// durationTier rates a median (nanoseconds) against each tier's strict upper bound (bound picks
// which); no median, no tier.
func (b benchmark) durationTier(median *big.Rat, bound func(tierBounds) time.Duration) *string {
	if median == nil {
		return nil
	}
	t := b.best(func(t tierBounds) bool { return median.Cmp(new(big.Rat).SetInt64(int64(bound(t)))) < 0 })
	return &t
}
