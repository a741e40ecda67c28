// Package config reads DevOpstic's configuration from environment variables, once, at start.
//
// Each service has one struct (Ingest, Writer, AllInOne) assembled from the parts it uses.
// Parsing takes the environment as a map so that tests never touch the process environment;
// Validate says in plain English what is missing or wrong, all of it at once. Every error, of
// Parse or of Validate, names the variable and the value it was given, in the user's words
// (DEVOPSTIC_MAX_BATCH, never the Go field MaxBatch); a secret's value is never shown.
//
// No variable is read from a file here: the images' entrypoint turns each DEVOPSTIC_X_FILE
// into DEVOPSTIC_X, and says itself when a file cannot be read.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/devopstic/devopstic/pkg/alertmanager"
	"github.com/devopstic/devopstic/pkg/auth"
)

// Database locates Postgres. URL, when set, overrides the parts (the original API's variables).
type Database struct {
	URL      string `env:"DEVOPSTIC_DATABASE_URL"`
	Host     string `env:"DEVOPSTIC_DATABASE_HOST" envDefault:"localhost"`
	Port     int    `env:"DEVOPSTIC_DATABASE_PORT" envDefault:"5432"`
	Username string `env:"DEVOPSTIC_DATABASE_USERNAME" envDefault:"devopstic"`
	Password string `env:"DEVOPSTIC_DATABASE_PASSWORD"`
	Name     string `env:"DEVOPSTIC_DATABASE_NAME" envDefault:"devopstic"`
	SSLMode  string `env:"DEVOPSTIC_DATABASE_SSLMODE" envDefault:"prefer"`
	MaxConns int32  `env:"DEVOPSTIC_DATABASE_MAX_CONNS" envDefault:"10"`
}

// ConnString is the database URL: URL as given, or one built from the parts.
func (d Database) ConnString() string {
	if d.URL != "" {
		return d.URL
	}
	u := url.URL{
		Scheme:   "postgres",
		Host:     net.JoinHostPort(d.Host, strconv.Itoa(d.Port)),
		Path:     "/" + d.Name,
		RawQuery: url.Values{"sslmode": {d.SSLMode}}.Encode(),
	}
	if d.Password != "" {
		u.User = url.UserPassword(d.Username, d.Password)
	} else {
		u.User = url.User(d.Username)
	}
	return u.String()
}

// NATS locates the JetStream server and shapes the stream.
type NATS struct {
	// URL of the NATS server(s), comma-separated. The all-in-one embeds a server when unset.
	URL string `env:"DEVOPSTIC_NATS_URL"`
	// User and Password authenticate to NATS, which requires them in every mode: the user of
	// the service's role (devopstic-ingest, devopstic-writer; devopstic-admin for the operator
	// commands and `devopstic migrate`). The all-in-one, when unset, takes each role's own
	// from its data directory's password file (stream.PasswordsFile), which its embedded
	// server writes.
	User            string        `env:"DEVOPSTIC_NATS_USER"`
	Password        string        `env:"DEVOPSTIC_NATS_PASSWORD"`
	StreamReplicas  int           `env:"DEVOPSTIC_STREAM_REPLICAS" envDefault:"1"`
	StreamMaxAge    time.Duration `env:"DEVOPSTIC_STREAM_MAX_AGE" envDefault:"8760h"`
	StreamMaxBytes  int64         `env:"DEVOPSTIC_STREAM_MAX_BYTES" envDefault:"-1"`
	DuplicateWindow time.Duration `env:"DEVOPSTIC_STREAM_DUPLICATE_WINDOW" envDefault:"24h"`
	PublishTimeout  time.Duration `env:"DEVOPSTIC_PUBLISH_TIMEOUT" envDefault:"5s"`
}

// DefaultNATSURL is where the ingest and writer look for NATS when DEVOPSTIC_NATS_URL is unset.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// HTTP shapes the public API.
type HTTP struct {
	Addr string `env:"DEVOPSTIC_HTTP_ADDR" envDefault:"127.0.0.1:8080"`
	// BodyLimit bounds a request's body, and so an event's stream message: NATS's max_payload
	// must take it plus stream.HeaderRoom. The default, 1 MB, fits NATS's default (1 MiB).
	BodyLimit int `env:"DEVOPSTIC_BODY_LIMIT" envDefault:"1000000"`
	MaxBatch  int `env:"DEVOPSTIC_MAX_BATCH" envDefault:"1000"`
	// AdminAddr, when set, serves /healthz and /readyz on an address of their own (keep it
	// off the public network); /readyz then leaves the public address.
	AdminAddr string `env:"DEVOPSTIC_ADMIN_ADDR"`
	// ProxyHeader names the header holding the client's address (X-Real-IP, ...), trusted
	// only from TrustedProxies (addresses or CIDRs): the login throttle counts per client.
	ProxyHeader    string   `env:"DEVOPSTIC_PROXY_HEADER"`
	TrustedProxies []string `env:"DEVOPSTIC_TRUSTED_PROXIES" envSeparator:","`
	// GrafanaURL, when set, is where the first page (GET /) links each team and pipeline to
	// its DORA dashboard: Grafana's address as a browser reaches it.
	GrafanaURL string `env:"DEVOPSTIC_GRAFANA_URL"`
}

// Auth holds the token keys, the configured login and the login throttle.
type Auth struct {
	// JWTSecret is one key or several, comma-separated: the first signs, any verifies.
	JWTSecret string `env:"DEVOPSTIC_JWT_SECRET"`
	// Username and Password are an admin login kept from the original API; optional now that
	// users can live in the database (devopstic user add).
	Username string        `env:"DEVOPSTIC_USERNAME"`
	Password string        `env:"DEVOPSTIC_PASSWORD"`
	TokenTTL time.Duration `env:"DEVOPSTIC_TOKEN_TTL" envDefault:"24h"`
	// RefreshWindow is how long after a login GET /refresh_token keeps working (or the TTL
	// when longer).
	RefreshWindow time.Duration `env:"DEVOPSTIC_TOKEN_REFRESH_WINDOW" envDefault:"168h"`
	// Failed logins allowed per client address and per username in LoginWindow; 0 is no limit.
	LoginAttempts     int           `env:"DEVOPSTIC_LOGIN_ATTEMPTS" envDefault:"10"`
	LoginUserAttempts int           `env:"DEVOPSTIC_LOGIN_USER_ATTEMPTS" envDefault:"50"`
	LoginWindow       time.Duration `env:"DEVOPSTIC_LOGIN_WINDOW" envDefault:"15m"`
}

// JWTSecrets are the configured keys, in order.
func (a Auth) JWTSecrets() []string {
	var keys []string
	for _, k := range strings.Split(a.JWTSecret, ",") {
		keys = append(keys, strings.TrimSpace(k))
	}
	return keys
}

// GitHub configures POST /github/events.
type GitHub struct {
	// Secrets verify signatures; several, comma-separated, for rotation. None: GitHub is off.
	Secrets           []string `env:"DEVOPSTIC_GITHUB_WEBHOOK_SECRET" envSeparator:","`
	DeployWorkflows   []string `env:"DEVOPSTIC_GITHUB_DEPLOY_WORKFLOWS" envSeparator:","`
	DeployEnvironment string   `env:"DEVOPSTIC_GITHUB_DEPLOY_ENVIRONMENT" envDefault:"production"`
	IncidentLabel     string   `env:"DEVOPSTIC_GITHUB_INCIDENT_LABEL" envDefault:"incident"`
}

// GitLab configures POST /gitlab/events.
type GitLab struct {
	// Secrets are compared with X-Gitlab-Token; several, comma-separated, for rotation. None:
	// GitLab is off.
	Secrets       []string `env:"DEVOPSTIC_GITLAB_WEBHOOK_SECRET" envSeparator:","`
	IncidentLabel string   `env:"DEVOPSTIC_GITLAB_INCIDENT_LABEL" envDefault:"incident"`
	// DeployPipelines names the pipelines (by name, else ref) and jobs whose finished runs are
	// deployments; none: Pipeline and Job hooks are ignored.
	DeployPipelines   []string `env:"DEVOPSTIC_GITLAB_DEPLOY_PIPELINES" envSeparator:","`
	DeployEnvironment string   `env:"DEVOPSTIC_GITLAB_DEPLOY_ENVIRONMENT" envDefault:"production"`
}

// PagerDuty configures POST /pagerduty/incidents.
type PagerDuty struct {
	// Secrets verify X-PagerDuty-Signature; several, comma-separated, for rotation. None:
	// PagerDuty is off.
	Secrets []string `env:"DEVOPSTIC_PAGERDUTY_WEBHOOK_SECRET" envSeparator:","`
}

// Alertmanager configures POST /alertmanager/alerts.
type Alertmanager struct {
	// Tokens authenticate Alertmanager (bearer, or basic auth's password); several,
	// comma-separated, for rotation. None: Alertmanager is off.
	Tokens []string `env:"DEVOPSTIC_ALERTMANAGER_TOKEN" envSeparator:","`
	// IncidentLabel picks the alerts that are incidents: name=value or name=~regexp
	// conditions, comma-separated, all of which must hold.
	IncidentLabel string `env:"DEVOPSTIC_ALERTMANAGER_INCIDENT_LABEL" envDefault:"severity=critical"`
}

func (a Alertmanager) validate() error {
	if _, err := alertmanager.ParseSelector(a.IncidentLabel); err != nil {
		return fmt.Errorf("DEVOPSTIC_ALERTMANAGER_INCIDENT_LABEL: %w", err)
	}
	return nil
}

// MinJWTSecret is the shortest accepted key: HS256 wants at least 256 bits.
const MinJWTSecret = 32

// WriterTuning shapes the writer.
type WriterTuning struct {
	BatchSize  int           `env:"DEVOPSTIC_WRITER_BATCH_SIZE" envDefault:"1000"`
	BatchWait  time.Duration `env:"DEVOPSTIC_WRITER_BATCH_WAIT" envDefault:"50ms"`
	MaxDeliver int           `env:"DEVOPSTIC_WRITER_MAX_DELIVER" envDefault:"5"`
	AckWait    time.Duration `env:"DEVOPSTIC_WRITER_ACK_WAIT" envDefault:"30s"`
	RetryMax   time.Duration `env:"DEVOPSTIC_WRITER_RETRY_MAX" envDefault:"5s"`
}

// Embedded shapes the all-in-one's embedded NATS server and its local data.
type Embedded struct {
	DataDir string `env:"DEVOPSTIC_DATA_DIR" envDefault:".data"`
	// NATSAddr is where the embedded server listens, for the nats CLI and other processes.
	NATSAddr string `env:"DEVOPSTIC_EMBEDDED_NATS_ADDR" envDefault:"127.0.0.1:4222"`
	// SyncInterval is "always" or a duration; see stream.ServerConfig.
	SyncInterval string `env:"DEVOPSTIC_NATS_SYNC_INTERVAL" envDefault:"2m"`
	// PGBinDir points `make run` at PostgreSQL's server binaries when they are not found.
	PGBinDir string `env:"DEVOPSTIC_PG_BINDIR"`
}

// Sync parses SyncInterval.
func (e Embedded) Sync() (interval time.Duration, always bool, err error) {
	if strings.EqualFold(e.SyncInterval, "always") {
		return 0, true, nil
	}
	d, err := time.ParseDuration(e.SyncInterval)
	if err != nil || d <= 0 {
		return 0, false, fmt.Errorf(`DEVOPSTIC_NATS_SYNC_INTERVAL must be "always" or a positive duration such as 2m, not %q`, e.SyncInterval)
	}
	return d, false, nil
}

// Log shapes the logs.
type Log struct {
	Level  string `env:"DEVOPSTIC_LOG_LEVEL" envDefault:"info"`
	Format string `env:"DEVOPSTIC_LOG_FORMAT" envDefault:"text"`
}

// SlogLevel parses Level.
func (l Log) SlogLevel() (slog.Level, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.Level)); err != nil {
		return 0, fmt.Errorf("DEVOPSTIC_LOG_LEVEL must be debug, info, warn or error, not %q", l.Level)
	}
	return lvl, nil
}

// Ingest is the ingest service's configuration.
type Ingest struct {
	HTTP         HTTP
	Auth         Auth
	GitHub       GitHub
	GitLab       GitLab
	PagerDuty    PagerDuty
	Alertmanager Alertmanager
	NATS         NATS
	Database     Database
	Log          Log
}

// Writer is the writer service's configuration.
type Writer struct {
	NATS     NATS
	Database Database
	Writer   WriterTuning
	Log      Log
	// AdminAddr, when set, serves /healthz and /metrics: the writer has no other HTTP address.
	AdminAddr string `env:"DEVOPSTIC_ADMIN_ADDR"`
}

// AllInOne is the devopstic command's configuration: ingest and writer in one process, with
// an embedded NATS server unless DEVOPSTIC_NATS_URL names one.
type AllInOne struct {
	HTTP         HTTP
	Auth         Auth
	GitHub       GitHub
	GitLab       GitLab
	PagerDuty    PagerDuty
	Alertmanager Alertmanager
	NATS         NATS
	Database     Database
	Writer       WriterTuning
	Embedded     Embedded
	Log          Log
}

// Validate checks the ingest's configuration.
func (c *Ingest) Validate() error {
	if c.NATS.URL == "" {
		c.NATS.URL = DefaultNATSURL
	}
	return errors.Join(c.HTTP.validate(), c.Auth.validate(), c.Alertmanager.validate(), c.NATS.validate(), c.Log.validate())
}

// Validate checks the writer's configuration.
func (c *Writer) Validate() error {
	if c.NATS.URL == "" {
		c.NATS.URL = DefaultNATSURL
	}
	var adminErr error
	if _, _, err := net.SplitHostPort(c.AdminAddr); c.AdminAddr != "" && err != nil {
		adminErr = fmt.Errorf("DEVOPSTIC_ADMIN_ADDR must be host:port such as 127.0.0.1:9090, not %q", c.AdminAddr)
	}
	return errors.Join(c.NATS.validate(), c.Writer.validate(), c.Log.validate(), adminErr)
}

// Validate checks the all-in-one's configuration.
func (c *AllInOne) Validate() error {
	_, _, syncErr := c.Embedded.Sync()
	return errors.Join(c.HTTP.validate(), c.Auth.validate(), c.Alertmanager.validate(), c.NATS.validate(), c.Writer.validate(), c.Log.validate(), syncErr)
}

// maxBodyLimit is the largest body whose message NATS can take at all: the largest max_payload
// a NATS server accepts by default (64 MiB, its max_pending; NATS advises 8 MiB at most) less
// stream.HeaderRoom (not imported: config stays below the packages it configures).
const maxBodyLimit = 64<<20 - 32<<10

func (h HTTP) validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(h.Addr); err != nil {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_HTTP_ADDR must be host:port such as 127.0.0.1:8080, not %q", h.Addr))
	}
	if h.BodyLimit < 1024 {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_BODY_LIMIT must be at least 1024 bytes, not %d", h.BodyLimit))
	}
	if h.BodyLimit > maxBodyLimit {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_BODY_LIMIT must be at most %d bytes (NATS takes messages of at most 64 MiB, headers included), not %d", maxBodyLimit, h.BodyLimit))
	}
	if h.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_MAX_BATCH must be at least 1, not %d", h.MaxBatch))
	}
	if _, _, err := net.SplitHostPort(h.AdminAddr); h.AdminAddr != "" && err != nil {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_ADMIN_ADDR must be host:port such as 127.0.0.1:9090, not %q", h.AdminAddr))
	}
	if h.AdminAddr != "" && h.AdminAddr == h.Addr {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_ADMIN_ADDR must differ from DEVOPSTIC_HTTP_ADDR (both are %q)", h.Addr))
	}
	for _, p := range h.TrustedProxies {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				errs = append(errs, fmt.Errorf("DEVOPSTIC_TRUSTED_PROXIES: %q is neither an address nor a CIDR range", p))
			}
		}
	}
	if h.GrafanaURL != "" {
		if u, err := url.Parse(h.GrafanaURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			errs = append(errs, fmt.Errorf("DEVOPSTIC_GRAFANA_URL must be an http or https address such as https://grafana.example.com, without credentials, not %q", h.GrafanaURL))
		}
	}
	switch {
	case h.ProxyHeader != "" && len(h.TrustedProxies) == 0:
		errs = append(errs, fmt.Errorf("DEVOPSTIC_PROXY_HEADER is %q but DEVOPSTIC_TRUSTED_PROXIES is empty: the header is believed only from those proxies", h.ProxyHeader))
	case h.ProxyHeader == "" && len(h.TrustedProxies) > 0:
		errs = append(errs, fmt.Errorf("DEVOPSTIC_TRUSTED_PROXIES is %q but DEVOPSTIC_PROXY_HEADER is empty: set the header holding the client's address (X-Real-IP)", strings.Join(h.TrustedProxies, ",")))
	}
	return errors.Join(errs...)
}

func (a Auth) validate() error {
	var errs []error
	if a.JWTSecret == "" {
		errs = append(errs, errors.New("DEVOPSTIC_JWT_SECRET is not set: set it to a random string of at least 32 bytes (for example: openssl rand -base64 48)"))
	} else {
		for i, k := range a.JWTSecrets() {
			if len(k) < MinJWTSecret {
				errs = append(errs, fmt.Errorf("DEVOPSTIC_JWT_SECRET: key %d of %d is %d bytes long: each must be at least %d (several keys are comma-separated)",
					i+1, len(a.JWTSecrets()), len(k), MinJWTSecret))
			}
		}
	}
	const together = "set both (an admin login for POST /tokens) or neither (only the database's users log in: devopstic user add)"
	switch {
	case a.Username != "" && a.Password == "":
		errs = append(errs, fmt.Errorf("DEVOPSTIC_USERNAME is %q but DEVOPSTIC_PASSWORD is empty: %s", a.Username, together))
	case a.Username == "" && a.Password != "":
		errs = append(errs, fmt.Errorf("DEVOPSTIC_PASSWORD is set but DEVOPSTIC_USERNAME is empty: %s", together))
	}
	if err := auth.CheckUsername(a.Username); err != nil {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_USERNAME: %q: %w", a.Username, err))
	}
	if a.TokenTTL < time.Minute {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_TOKEN_TTL must be at least 1m, not %s", a.TokenTTL))
	}
	if a.RefreshWindow < 0 {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_TOKEN_REFRESH_WINDOW must not be negative, not %s", a.RefreshWindow))
	}
	if a.LoginAttempts < 0 {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_LOGIN_ATTEMPTS must not be negative (0 turns the limit off), not %d", a.LoginAttempts))
	}
	if a.LoginUserAttempts < 0 {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_LOGIN_USER_ATTEMPTS must not be negative (0 turns the limit off), not %d", a.LoginUserAttempts))
	}
	if a.LoginWindow < time.Second {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_LOGIN_WINDOW must be at least 1s, not %s", a.LoginWindow))
	}
	return errors.Join(errs...)
}

func (n NATS) validate() error {
	var errs []error
	if n.Password != "" && n.User == "" {
		errs = append(errs, errors.New("DEVOPSTIC_NATS_PASSWORD is set but DEVOPSTIC_NATS_USER is not: set the user it belongs to"))
	}
	if n.User != "" && n.Password == "" {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_NATS_USER is %q but DEVOPSTIC_NATS_PASSWORD is empty: set both", n.User))
	}
	if n.StreamReplicas < 1 || n.StreamReplicas > 5 {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_STREAM_REPLICAS must be between 1 and 5, not %d", n.StreamReplicas))
	}
	if n.StreamMaxAge < 0 {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_STREAM_MAX_AGE must not be negative (0 keeps messages forever), not %s", n.StreamMaxAge))
	}
	if n.DuplicateWindow <= 0 {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_STREAM_DUPLICATE_WINDOW must be positive, such as 24h, not %s", n.DuplicateWindow))
	}
	if n.StreamMaxAge > 0 && n.DuplicateWindow > n.StreamMaxAge {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_STREAM_DUPLICATE_WINDOW must not exceed DEVOPSTIC_STREAM_MAX_AGE: %s is longer than %s", n.DuplicateWindow, n.StreamMaxAge))
	}
	if n.PublishTimeout <= 0 {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_PUBLISH_TIMEOUT must be positive, such as 5s, not %s", n.PublishTimeout))
	}
	return errors.Join(errs...)
}

func (w WriterTuning) validate() error {
	var errs []error
	if w.BatchSize < 1 || w.BatchSize > 10000 {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_WRITER_BATCH_SIZE must be between 1 and 10000, not %d", w.BatchSize))
	}
	if w.BatchWait < 0 {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_WRITER_BATCH_WAIT must not be negative, not %s", w.BatchWait))
	}
	if w.MaxDeliver < 1 {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_WRITER_MAX_DELIVER must be at least 1, not %d", w.MaxDeliver))
	}
	if w.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_WRITER_ACK_WAIT must be at least 1s, not %s", w.AckWait))
	}
	if w.RetryMax < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("DEVOPSTIC_WRITER_RETRY_MAX must be at least 100ms, not %s", w.RetryMax))
	}
	return errors.Join(errs...)
}

func (l Log) validate() error {
	_, err := l.SlogLevel()
	if l.Format != "text" && l.Format != "json" {
		err = errors.Join(err, fmt.Errorf("DEVOPSTIC_LOG_FORMAT must be text or json, not %q", l.Format))
	}
	return err
}

// Logger builds the logger the configuration asks for, writing to w.
func (l Log) Logger(w io.Writer) *slog.Logger {
	lvl, _ := l.SlogLevel() // validated at start; an invalid level falls back to info
	opts := &slog.HandlerOptions{Level: lvl}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Ingest is the part of the all-in-one's configuration that the ingest uses.
func (c AllInOne) Ingest() Ingest {
	return Ingest{HTTP: c.HTTP, Auth: c.Auth, GitHub: c.GitHub, GitLab: c.GitLab, PagerDuty: c.PagerDuty, Alertmanager: c.Alertmanager,
		NATS: c.NATS, Database: c.Database, Log: c.Log}
}
