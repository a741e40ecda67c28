package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// requestFunc makes worker w's i-th request and says how many events it carries.
type requestFunc func(w, i int) (*http.Request, int)

// loadResult is what a run of requests measured.
type loadResult struct {
	events    int
	failed    int
	firstFail string
	elapsed   time.Duration
	latencies []time.Duration // sorted
}

func (r loadResult) rate() float64 { return float64(r.events) / r.elapsed.Seconds() }

func (r loadResult) percentile(p float64) time.Duration { return percentile(r.latencies, p) }

// percentile of sorted durations, by the nearest rank; 0 when there are none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// newClient is an HTTP client that keeps a connection alive per worker.
func newClient(workers int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        workers,
			MaxIdleConnsPerHost: workers,
			IdleConnTimeout:     time.Minute,
		},
	}
}

// closedLoop runs workers that each send a request, wait for its answer and send the next,
// until d has passed. Events count only from answers with status want.
func closedLoop(ctx context.Context, workers int, d time.Duration, want int, next requestFunc) loadResult {
	client := newClient(workers)
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()

	var (
		mu  sync.Mutex
		res loadResult
		wg  sync.WaitGroup
	)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			events, failed, firstFail := 0, 0, ""
			for i := 0; ctx.Err() == nil; i++ {
				req, n := next(w, i)
				t := time.Now()
				status, body, err := send(client, req)
				if err != nil && ctx.Err() != nil {
					break // cut off by the deadline, not a failure of the server
				}
				lat = append(lat, time.Since(t))
				if err != nil || status != want {
					failed++
					if firstFail == "" {
						firstFail = fmt.Sprintf("%d %s %v", status, body, err)
					}
					continue
				}
				events += n
			}
			mu.Lock()
			defer mu.Unlock()
			res.events += events
			res.failed += failed
			res.latencies = append(res.latencies, lat...)
			if res.firstFail == "" {
				res.firstFail = firstFail
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.latencies)
	return res
}

// send does req and reads its answer: status and, for an error status, the start of the body.
func send(client *http.Client, req *http.Request) (int, string, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return resp.StatusCode, string(b), nil
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, "", err
}

// paced sends rate requests per second for d, spread over workers, and calls accepted with
// each request's index and the time its answer (status want) arrived. It returns how many
// requests were sent and how many failed. A request the workers cannot start in time waits:
// the achieved rate is what the caller reports.
func paced(ctx context.Context, workers, rate int, d time.Duration, want int, next requestFunc,
	accepted func(i int, at time.Time)) (sent, failed int, firstFail string, elapsed time.Duration) {
	client := newClient(workers)
	defer client.CloseIdleConnections()

	const tick = 10 * time.Millisecond
	tokens := make(chan int, rate)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range tokens {
				req, _ := next(w, i)
				status, body, err := send(client, req)
				at := time.Now()
				if err != nil || status != want {
					mu.Lock()
					failed++
					if firstFail == "" {
						firstFail = fmt.Sprintf("%d %s %v", status, body, err)
					}
					mu.Unlock()
					continue
				}
				accepted(i, at)
			}
		}()
	}
	// Release the requests due at each tick: rate*elapsed of them so far, rounding included.
	ticker := time.NewTicker(tick)
	total := int(float64(rate) * d.Seconds())
	for sent < total && ctx.Err() == nil {
		due := min(int(float64(rate)*time.Since(start).Seconds()), total)
		for ; sent < due; sent++ {
			tokens <- sent
		}
		<-ticker.C
	}
	ticker.Stop()
	close(tokens)
	wg.Wait()
	return sent, failed, firstFail, time.Since(start)
}
