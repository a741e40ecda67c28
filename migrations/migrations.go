// Package migrations embeds the numbered SQL files that define DevOpstic's schema, so every
// service carries the schema it was built for and runs it on start (pkg/store.Migrate).
package migrations

import "embed"

// FS holds NNNN_name.up.sql and .down.sql, in golang-migrate's naming.
//
//go:embed *.sql
var FS embed.FS
