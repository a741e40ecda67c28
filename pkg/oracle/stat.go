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

// Tiers (DORA 2023), rated on exact values, not on the rounded figures shown (docs/metrics.md).
const (
	elite  = "elite"
	high   = "high"
	medium = "medium"
	low    = "low"
)

// frequencyTier rates successful deployments per day: no deployments is a known zero, low.
func frequencyTier(perDay *big.Rat) string {
	switch {
	case perDay.Cmp(big.NewRat(1, 1)) >= 0:
		return elite
	case perDay.Cmp(big.NewRat(1, 7)) >= 0:
		return high
	case perDay.Cmp(big.NewRat(1, 30)) >= 0:
		return medium
	default:
		return low
	}
}

// failureTier rates failed ÷ attempts: ≤ 5%, ≤ 10%, ≤ 15%; no attempts, no tier.
func failureTier(failed, attempts int64) *string {
	if attempts == 0 {
		return nil
	}
	rate := big.NewRat(failed, attempts)
	t := low
	switch {
	case rate.Cmp(big.NewRat(5, 100)) <= 0:
		t = elite
	case rate.Cmp(big.NewRat(10, 100)) <= 0:
		t = high
	case rate.Cmp(big.NewRat(15, 100)) <= 0:
		t = medium
	}
	return &t
}

// durationTier rates a median (nanoseconds) against three strict upper bounds; no median, no
// tier.
func durationTier(median *big.Rat, eliteBelow, highBelow, mediumBelow time.Duration) *string {
	if median == nil {
		return nil
	}
	below := func(d time.Duration) bool { return median.Cmp(new(big.Rat).SetInt64(int64(d))) < 0 }
	t := low
	switch {
	case below(eliteBelow):
		t = elite
	case below(highBelow):
		t = high
	case below(mediumBelow):
		t = medium
	}
	return &t
}
