package dora

import (
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/store"
)

// Tiers, best first.
const (
	Elite  = "elite"
	High   = "high"
	Medium = "medium"
	Low    = "low"
)

// rated are the tiers a benchmark gives bounds for, in the order a value is tried against them;
// low is whatever meets none.
var rated = []string{Elite, High, Medium}

// ErrBadBenchmark is a benchmark table the rules below cannot rate with (a migration's mistake,
// not a client's).
var ErrBadBenchmark = errors.New("invalid DORA benchmark")

// Benchmark is one set of DORA's tier bounds, from one report (migration 0013's rows), ready to
// rate with.
//
// The rule (docs/metrics.md, "Benchmarks"): a metric is rated at the best tier whose bound it
// meets, each bound as the report publishes it; a value that meets none is low. The bounds need
// not be monotonic: DORA's clusters are found on the four keys together, and in 2024 the medium
// cluster's change failure rate (10%) is better than the high cluster's (20%). Rated on change
// failure rate alone, a value that meets medium's bound meets high's as well and is rated high:
// medium is then never the answer for that key, and the docs say so rather than invent a bound
// the report does not publish.
type Benchmark struct {
	// Name is what ?benchmark= takes ("2024"); Label the answer's tier_source ("DORA 2024").
	Name, Label string
	ReportYear  int
	ReportTitle string
	ReportURL   string
	tiers       []bounds // elite, high, medium
}

// bounds are what a value must meet for one tier.
type bounds struct {
	tier                           string
	deploysAtLeast, deploysPerDays int64
	leadTimeBelow                  float64 // seconds, strictly below
	failureAtMost                  *big.Rat
	recoveryBelow                  float64 // seconds, strictly below
}

// NewBenchmark checks a benchmark's rows and makes it ready to rate with: elite, high and medium
// exactly, in that order, each bound positive, rates between 0 and 1.
func NewBenchmark(b store.Benchmark) (Benchmark, error) {
	out := Benchmark{Name: b.Name, Label: b.Label, ReportYear: b.ReportYear, ReportTitle: b.ReportTitle, ReportURL: b.ReportURL}
	if len(b.Tiers) != len(rated) {
		return Benchmark{}, fmt.Errorf("%w: %s has %d tiers, not elite, high and medium", ErrBadBenchmark, b.Name, len(b.Tiers))
	}
	for i, t := range b.Tiers {
		rate, ok := new(big.Rat).SetString(t.ChangeFailureRateAtMost)
		switch {
		case t.Tier != rated[i]:
			return Benchmark{}, fmt.Errorf("%w: %s's tier %d is %q, not %s", ErrBadBenchmark, b.Name, i+1, t.Tier, rated[i])
		case t.DeploysAtLeast <= 0 || t.DeploysPerDays <= 0 || t.LeadTimeBelowSeconds <= 0 || t.RecoveryBelowSeconds <= 0:
			return Benchmark{}, fmt.Errorf("%w: %s %s: every bound must be positive", ErrBadBenchmark, b.Name, t.Tier)
		case !ok || rate.Sign() < 0 || rate.Cmp(big.NewRat(1, 1)) > 0:
			return Benchmark{}, fmt.Errorf("%w: %s %s: change failure rate %q is not a fraction from 0 to 1", ErrBadBenchmark, b.Name, t.Tier, t.ChangeFailureRateAtMost)
		}
		out.tiers = append(out.tiers, bounds{
			tier:           t.Tier,
			deploysAtLeast: t.DeploysAtLeast,
			deploysPerDays: t.DeploysPerDays,
			leadTimeBelow:  float64(t.LeadTimeBelowSeconds),
			failureAtMost:  rate,
			recoveryBelow:  float64(t.RecoveryBelowSeconds),
		})
	}
	return out, nil
}

// best is the first tier (best first) whose bound meets says it meets, else low.
func (b Benchmark) best(meets func(bounds) bool) string {
	for _, t := range b.tiers {
		if meets(t) {
			return t.tier
		}
	}
	return Low
}

// DeploymentFrequencyTier rates deployments successful deployments in [from, to), exactly: at
// least n per d days is deployments × d days ≥ n × the window, compared in nanoseconds as
// integers (no float, and a window longer than a time.Duration holds is rated on its real
// length). None is low: a count of zero is known.
func (b Benchmark) DeploymentFrequencyTier(deployments int64, from, to time.Time) string {
	window := new(big.Int).Mul(big.NewInt(to.Unix()-from.Unix()), big.NewInt(int64(time.Second)))
	window.Add(window, big.NewInt(int64(to.Nanosecond()-from.Nanosecond())))
	return b.best(func(t bounds) bool {
		have := new(big.Int).Mul(big.NewInt(deployments), big.NewInt(t.deploysPerDays*int64(24*time.Hour)))
		need := new(big.Int).Mul(big.NewInt(t.deploysAtLeast), window)
		return have.Cmp(need) >= 0
	})
}

// LeadTimeTier rates a median lead time in seconds, exact (not rounded: a median of 86,399.5 s
// is under a day); nil has no tier.
func (b Benchmark) LeadTimeTier(median *float64) *string {
	if median == nil {
		return nil
	}
	return tier(b.best(func(t bounds) bool { return *median < t.leadTimeBelow }))
}

// ChangeFailureRateTier rates failed out of attempts, exactly (not the rate rounded to 4
// decimals); no attempts, no tier.
func (b Benchmark) ChangeFailureRateTier(failed, attempts int64) *string {
	if attempts == 0 {
		return nil
	}
	rate := big.NewRat(failed, attempts)
	return tier(b.best(func(t bounds) bool { return rate.Cmp(t.failureAtMost) <= 0 }))
}

// RecoveryTimeTier rates a median failed deployment recovery time in seconds, exact; nil has no
// tier.
func (b Benchmark) RecoveryTimeTier(median *float64) *string {
	if median == nil {
		return nil
	}
	return tier(b.best(func(t bounds) bool { return *median < t.recoveryBelow }))
}

func tier(s string) *string { return &s }

// Benchmarks are the benchmarks a query may name, the newest report first: that one is the
// default.
type Benchmarks []Benchmark

// NewBenchmarks makes the store's benchmarks ready to rate with. There must be at least one.
func NewBenchmarks(list []store.Benchmark) (Benchmarks, error) {
	if len(list) == 0 {
		return nil, fmt.Errorf("%w: no benchmark at all (migration 0013 adds them)", ErrBadBenchmark)
	}
	out := make(Benchmarks, 0, len(list))
	for _, sb := range list {
		b, err := NewBenchmark(sb)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	slices.SortStableFunc(out, func(a, b Benchmark) int { return b.ReportYear - a.ReportYear })
	return out, nil
}

// Default is the benchmark of the newest report.
func (bs Benchmarks) Default() Benchmark { return bs[0] }

// Get is the benchmark named (the default for ""); an unknown name is an ErrBadParameter that
// names the parameter and the benchmarks there are.
func (bs Benchmarks) Get(name string) (Benchmark, error) {
	if name == "" {
		return bs.Default(), nil
	}
	names := make([]string, len(bs))
	for i, b := range bs {
		if b.Name == name {
			return b, nil
		}
		names[i] = b.Name
	}
	return Benchmark{}, fmt.Errorf("%w: benchmark must be one of %s (default %s), not %q",
		ErrBadParameter, strings.Join(names, ", "), bs.Default().Name, name)
}
