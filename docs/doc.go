// Package docs holds no code: it is where DevOpstic's reference documentation lives (the Markdown
// files beside this one, linked from the README's "Where to go next") and where its test runs, as
// part of `make test`: every relative link in the repository's Markdown resolves, anchors
// included, and every DEVOPSTIC_* variable that pkg/config reads is in configuration.md.
package docs
