package githubimport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Errors of a request to GitHub. A refusal that waiting cannot change ends the import; rate
// limits and server errors are waited out and retried.
var (
	// ErrUnauthorized: GitHub refused the token (401).
	ErrUnauthorized = errors.New("GitHub refused the token")
	// ErrForbidden: the token may not read this (403 that is not a rate limit).
	ErrForbidden = errors.New("GitHub refused access")
	// ErrNotFound: no such repository, or one the token cannot see (404).
	ErrNotFound = errors.New("not found on GitHub")
	// ErrUnavailable: GitHub kept failing (5xx, or the connection) after every retry.
	ErrUnavailable = errors.New("GitHub is unavailable")
)

// Client reads GitHub's REST API: one page at a time, following the Link header, waiting out
// the primary rate limit (X-RateLimit-Remaining 0 until X-RateLimit-Reset) and the secondary one
// (Retry-After, or a minute when GitHub does not say), and retrying 5xx answers and broken
// connections with exponential backoff.
type Client struct {
	// BaseURL is the API's root: https://api.github.com, or a GitHub Enterprise Server's
	// https://HOST/api/v3.
	BaseURL string
	Token   string
	HTTP    *http.Client
	// Retries bounds the retries of one request that fails with a 5xx or a broken connection.
	Retries int
	// Now and Sleep are the clock (time.Now, and a sleep that ctx interrupts when nil).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// Waiting is told of each wait for a rate limit or a retry, for the progress output.
	Waiting func(reason string, d time.Duration)
	// Requests counts the requests sent, retries included.
	Requests int
}

// maxLimitWaits bounds the rate-limit waits of one request: a server that keeps saying "wait"
// after this many is broken, not busy.
const maxLimitWaits = 20

// Page is one answer of a list: its body, and the URLs of the next and last pages ("" when
// there are none).
type Page struct {
	Body       []byte
	Next, Last string
}

// Get reads url (absolute, or a path under BaseURL).
func (c *Client) Get(ctx context.Context, url string) (Page, error) {
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		url = strings.TrimSuffix(c.BaseURL, "/") + url
	}
	failures, waits := 0, 0
	for {
		page, retryIn, reason, err := c.try(ctx, url)
		if err == nil {
			return page, nil
		}
		if retryIn < 0 || ctx.Err() != nil {
			return Page{}, err
		}
		if reason == "" { // a server error or a broken connection
			failures++
			if failures > c.Retries {
				return Page{}, fmt.Errorf("%w: GET %s failed %d times: %w", ErrUnavailable, redact(url), failures, err)
			}
			retryIn = time.Second << min(failures-1, 6)
			reason = fmt.Sprintf("GitHub failed (%v); retry %d of %d", err, failures, c.Retries)
		} else {
			waits++
			if waits > maxLimitWaits {
				return Page{}, fmt.Errorf("GET %s: still rate limited after %d waits: %w", redact(url), maxLimitWaits, err)
			}
		}
		if c.Waiting != nil {
			c.Waiting(reason, retryIn)
		}
		if err := c.sleep(ctx, retryIn); err != nil {
			return Page{}, err
		}
	}
}

// try sends one request. On failure, retryIn says when to try again (negative: never), and
// reason why when it is a rate limit ("" for a failure that counts against Retries).
func (c *Client) try(ctx context.Context, url string) (page Page, retryIn time.Duration, reason string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Page{}, -1, "", fmt.Errorf("GET %s: %w", redact(url), err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "devopstic-import")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	c.Requests++
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Page{}, 0, "", fmt.Errorf("GET %s: %w", redact(url), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return Page{}, 0, "", fmt.Errorf("GET %s: read the answer: %w", redact(url), err)
	}
	if resp.StatusCode == http.StatusOK {
		next, last := links(resp.Header.Get("Link"))
		return Page{Body: body, Next: next, Last: last}, 0, "", nil
	}
	what := fmt.Errorf("GET %s: %s: %s", redact(url), resp.Status, message(body))
	if wait, why, limited := c.rateLimit(resp, body); limited {
		return Page{}, wait, why, what
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return Page{}, -1, "", fmt.Errorf("%w (give a token with --token or GITHUB_TOKEN that can read the repository): %w", ErrUnauthorized, what)
	case resp.StatusCode == http.StatusForbidden:
		return Page{}, -1, "", fmt.Errorf("%w: %w", ErrForbidden, what)
	case resp.StatusCode == http.StatusNotFound:
		return Page{}, -1, "", fmt.Errorf("%w: %w", ErrNotFound, what)
	case resp.StatusCode >= 500:
		return Page{}, 0, "", what
	}
	return Page{}, -1, "", what
}

// rateLimit reads whether an answer is a rate limit, and how long to wait. The secondary limit
// says Retry-After; the primary one says X-RateLimit-Remaining: 0 and when it resets.
func (c *Client) rateLimit(resp *http.Response, body []byte) (time.Duration, string, bool) {
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusTooManyRequests {
		return 0, "", false
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, "GitHub's secondary rate limit (Retry-After)", true
	}
	if resp.Header.Get("X-RateLimit-Remaining") == "0" {
		reset, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64)
		if err == nil {
			wait := time.Unix(reset, 0).Sub(c.now()) + time.Second
			return max(wait, time.Second), "GitHub's rate limit (until " + time.Unix(reset, 0).UTC().Format(time.TimeOnly) + " UTC)", true
		}
		return time.Minute, "GitHub's rate limit", true
	}
	if resp.StatusCode == http.StatusTooManyRequests || strings.Contains(strings.ToLower(string(body)), "secondary rate limit") {
		return time.Minute, "GitHub's secondary rate limit", true // GitHub: wait at least a minute
	}
	return 0, "", false
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	if c.Sleep != nil {
		return c.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// linkRel finds `<url>; rel="name"` in a Link header.
var linkRel = regexp.MustCompile(`<([^>]*)>\s*;\s*rel="([^"]*)"`)

// links reads the next and last pages of a Link header.
func links(header string) (next, last string) {
	for _, m := range linkRel.FindAllStringSubmatch(header, -1) {
		switch m[2] {
		case "next":
			next = m[1]
		case "last":
			last = m[1]
		}
	}
	return next, last
}

// message is the "message" of GitHub's error body, or the start of the body.
func message(body []byte) string {
	if m := regexp.MustCompile(`"message"\s*:\s*"([^"]*)"`).FindSubmatch(body); m != nil {
		return string(m[1])
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return strings.TrimSpace(string(body))
}

// redact drops a URL's query: it may hold nothing secret, but it is long.
func redact(url string) string {
	if i := strings.IndexByte(url, '?'); i >= 0 {
		return url[:i]
	}
	return url
}
