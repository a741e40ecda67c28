package stream

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Role is one of DevOpstic's NATS users, named by what it does. NATS requires a user and
// password in every mode; each role may publish and subscribe to the subjects its Permissions
// list and no others.
type Role string

// The roles. The ingest publishes events and reads the auth bucket; the writer consumes the
// stream through its durable consumer; the admin (the operator commands, and whoever sets the
// stream up) may do anything.
const (
	RoleIngest Role = "ingest"
	RoleWriter Role = "writer"
	RoleAdmin  Role = "admin"
)

// Roles lists every role.
var Roles = []Role{RoleIngest, RoleWriter, RoleAdmin}

// User is the role's NATS user name, the same in the embedded server and in
// deployments/nats/*.conf.
func (r Role) User() string { return "devopstic-" + string(r) }

// PasswordVar is the environment variable holding the role's password where NATS runs on its
// own (deployments/nats/*.conf read it), and the key of the embedded server's password file.
func (r Role) PasswordVar() string {
	return "DEVOPSTIC_NATS_" + strings.ToUpper(string(r)) + "_PASSWORD"
}

// InboxPrefix is where the role's connections receive replies: a prefix of its own, so that no
// role can subscribe to another's replies (which carry API responses and, for the ingest, the
// auth bucket's records).
func (r Role) InboxPrefix() string { return "_INBOX.devopstic-" + string(r) }

// The JetStream API subjects the roles use (nats.go's jetstream package and its KV watch).
const (
	jsAPI = "$JS.API."
	// kvStream is the stream behind the auth bucket.
	kvStream = "KV_" + AuthBucket
)

// Permissions are the subjects a role may publish and subscribe to, as the NATS server takes
// them (allow-lists: anything else is refused). Admin's are nil: it may do everything.
//
// What is deliberately absent matters as much:
//   - No role but admin may create or update a stream ($JS.API.STREAM.CREATE/UPDATE). A
//     stream's configuration can republish its messages to any subject, the auth bucket's
//     included ($KV.DEVOPSTIC_AUTH.apikey.<hash>), or source another stream into it: the right
//     to shape any stream is the right to write the auth bucket. Setup, run with the admin's
//     credentials (the all-in-one does it for its embedded server, `devopstic migrate` for an
//     external NATS), creates both streams; the ingest and the writer only look them up.
//   - The ingest may not publish to $KV.> (writing the auth bucket mints API keys), nor
//     delete or purge anything.
//   - The writer may not publish events, and reaches its durable consumer only.
//
// A consumer, which the writer (its durable) and the ingest (the watch of the auth bucket)
// create, cannot write a stream: a push consumer's deliveries are not stored by a stream
// listening on its deliver subject, and one delivering into its own stream is refused.
func (r Role) Permissions() *server.Permissions {
	var publish []string
	switch r {
	case RoleIngest:
		publish = []string{
			SubjectPrefix + ".>",
			jsAPI + "STREAM.INFO." + StreamName,   // readiness
			jsAPI + "STREAM.INFO." + kvStream,     // the auth bucket...
			jsAPI + "CONSUMER.CREATE." + kvStream, // ...watched by an ordered consumer
			jsAPI + "CONSUMER.CREATE." + kvStream + ".>",
			jsAPI + "CONSUMER.DELETE." + kvStream + ".*", // the watch stopping
			"$JS.FC." + kvStream + ".>",                  // the watch's flow control
		}
	case RoleWriter:
		publish = []string{
			jsAPI + "STREAM.INFO." + StreamName,
			jsAPI + "CONSUMER.CREATE." + StreamName + "." + ConsumerName,
			jsAPI + "CONSUMER.CREATE." + StreamName + "." + ConsumerName + ".>",
			jsAPI + "CONSUMER.INFO." + StreamName + "." + ConsumerName,
			jsAPI + "CONSUMER.MSG.NEXT." + StreamName + "." + ConsumerName,
			"$JS.ACK." + StreamName + "." + ConsumerName + ".>", // ack, nak, in progress, term
		}
	default:
		return nil
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: publish},
		Subscribe: &server.SubjectPermission{Allow: []string{r.InboxPrefix() + ".>"}},
	}
}

// Passwords holds a password per role.
type Passwords map[Role]string

// ServerUsers are the NATS users of passwords, with their roles' permissions.
func ServerUsers(passwords Passwords) ([]*server.User, error) {
	var users []*server.User
	for _, r := range Roles {
		pw := passwords[r]
		if pw == "" {
			return nil, fmt.Errorf("no NATS password for the role %s", r)
		}
		users = append(users, &server.User{Username: r.User(), Password: pw, Permissions: r.Permissions()})
	}
	return users, nil
}

// Login is who a connection authenticates as: a user and password, and the role whose
// permissions that user has (which sets the inbox prefix its replies come to). User "" connects
// without credentials, which a DevOpstic NATS server refuses.
type Login struct {
	Role     Role
	User     string
	Password string
}

// As is the login of role with passwords' password, under the role's own user name.
func (p Passwords) As(role Role) Login {
	return Login{Role: role, User: role.User(), Password: p[role]}
}

// Options are the connection options of l.
func (l Login) Options() []nats.Option {
	opts := []nats.Option{nats.CustomInboxPrefix(l.Role.InboxPrefix())}
	if l.User != "" {
		opts = append(opts, nats.UserInfo(l.User, l.Password))
	}
	return opts
}

// ConnectAs is Connect with l's credentials and inbox prefix.
func ConnectAs(url, name string, l Login, opts ...nats.Option) (*nats.Conn, error) {
	return Connect(url, name, append(l.Options(), opts...)...)
}

// ErrCredentialsRefused means NATS refused a connection's user and password: retrying cannot
// help, the configuration must change.
var ErrCredentialsRefused = errors.New("NATS refused the credentials")

// Refused is nil unless err (a connection's error, or nc's last one when err is nil) is NATS
// refusing l's credentials, and then says so in the operator's terms.
func (l Login) Refused(nc *nats.Conn, err error) error {
	if err == nil && nc != nil {
		err = nc.LastError()
	}
	if !errors.Is(err, nats.ErrAuthorization) && !errors.Is(err, nats.ErrAuthExpired) && !errors.Is(err, nats.ErrAuthRevoked) {
		return nil
	}
	if l.User == "" {
		return fmt.Errorf("%w: it requires a user and password: set DEVOPSTIC_NATS_USER and DEVOPSTIC_NATS_PASSWORD (%w)", ErrCredentialsRefused, err)
	}
	return fmt.Errorf("%w of user %s: set DEVOPSTIC_NATS_USER and DEVOPSTIC_NATS_PASSWORD (%w)", ErrCredentialsRefused, l.User, err)
}
