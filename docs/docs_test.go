package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
)

// root is the repository, seen from this package's directory (where go test runs).
const root = ".."

// TestRelativeLinksResolve follows every relative link of every Markdown file in the repository
// (README.md, SECURITY.md, docs/, the deployment notes): the file must exist inside the
// repository and, for a link into a Markdown file, the anchor must be one of its headings.
func TestRelativeLinksResolve(t *testing.T) {
	t.Parallel()
	files := markdownFiles(t)
	require.Contains(t, files, "README.md")
	anchors := map[string][]string{}
	anchorsOf := func(name string) []string {
		if a, ok := anchors[name]; ok {
			return a
		}
		a := headingAnchors(read(t, name))
		anchors[name] = a
		return a
	}
	for _, name := range files {
		for _, l := range links(read(t, name)) {
			target, fragment, _ := strings.Cut(l.target, "#")
			path, err := url.PathUnescape(target)
			if err != nil {
				t.Errorf("%s:%d: link %q: %v", name, l.line, l.target, err)
				continue
			}
			resolved := name // a bare #anchor points into the file itself
			if path != "" {
				resolved = filepath.ToSlash(filepath.Join(filepath.Dir(name), path))
				if resolved == ".." || strings.HasPrefix(resolved, "../") || filepath.IsAbs(path) {
					t.Errorf("%s:%d: link %q leaves the repository", name, l.line, l.target)
					continue
				}
				if _, err := os.Stat(filepath.Join(root, resolved)); err != nil {
					t.Errorf("%s:%d: link %q: %s does not exist", name, l.line, l.target, resolved)
					continue
				}
			}
			if fragment == "" || !strings.HasSuffix(resolved, ".md") {
				continue
			}
			if !slices.Contains(anchorsOf(resolved), fragment) {
				t.Errorf("%s:%d: link %q: %s has no heading with the anchor #%s", name, l.line, l.target, resolved, fragment)
			}
		}
	}
}

// TestEveryConfigVariableIsDocumented reads every env tag in pkg/config's source and looks for
// the variable, in backquotes, in docs/configuration.md.
func TestEveryConfigVariableIsDocumented(t *testing.T) {
	t.Parallel()
	vars := configVariables(t)
	require.GreaterOrEqual(t, len(vars), 40, "pkg/config's env tags were not found: has the package moved?")
	doc := read(t, "docs/configuration.md")
	for _, v := range vars {
		if !strings.Contains(doc, "`"+v+"`") {
			t.Errorf("%s is read by pkg/config but not documented in docs/configuration.md", v)
		}
	}
}

// TestAnchor pins the heading-to-anchor rule the link test relies on to GitHub's: lowercase,
// punctuation dropped, each space a hyphen, and a repeated heading numbered.
func TestAnchor(t *testing.T) {
	t.Parallel()
	md := "# DevOpstic\n## Docker Compose, on one machine\n### `DEVOPSTIC_DATA_DIR` and .data/\n" +
		"## API keys for CI\n```sh\n# not a heading\n```\n## Status\n## Status\n" +
		"## [Linked](x.md) *and* emphasised — too\n"
	require.Equal(t, []string{
		"devopstic", "docker-compose-on-one-machine", "devopstic_data_dir-and-data",
		"api-keys-for-ci", "status", "status-1", "linked-and-emphasised--too",
	}, headingAnchors(md))
}

// TestLinks pins what counts as a link: inline and reference links outside code, with or without
// a title; absolute URLs are left out.
func TestLinks(t *testing.T) {
	t.Parallel()
	md := "See [the API](docs/api.md#answers) and [`SECURITY.md`](SECURITY.md \"policy\").\n" +
		"Not `[code](nope.md)`, nor [web](https://example.com) or [mail](mailto:a@b.c).\n" +
		"```\n[fenced](nope.md)\n```\n[ref]: docs/metrics.md\n[same page](#quick-start)\n"
	var got []string
	for _, l := range links(md) {
		got = append(got, strconv.Itoa(l.line)+" "+l.target)
	}
	require.Equal(t, []string{
		"1 docs/api.md#answers", "1 SECURITY.md", "6 docs/metrics.md", "7 #quick-start",
	}, got)
}

// markdownFiles lists the repository's Markdown files, relative to it, leaving out hidden
// directories (.git, .data) and build output.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".md") {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	require.NoError(t, err)
	return files
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	require.NoError(t, err)
	return string(b)
}

type link struct {
	line   int
	target string
}

var (
	fence      = regexp.MustCompile("^ {0,3}(```|~~~)")
	codeSpan   = regexp.MustCompile("`+[^`]*`+")
	inlineLink = regexp.MustCompile(`\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
	refLink    = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?`)
	scheme     = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*:|//)`)
)

// links returns the relative link targets of a Markdown text, outside fenced code and code spans.
func links(md string) []link {
	var out []link
	inFence := false
	for i, line := range strings.Split(md, "\n") {
		if fence.MatchString(line) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		line = codeSpan.ReplaceAllString(line, "code")
		var targets []string
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			targets = append(targets, m[1])
		}
		if m := refLink.FindStringSubmatch(line); m != nil {
			targets = append(targets, m[1])
		}
		for _, target := range targets {
			if target != "" && !scheme.MatchString(target) {
				out = append(out, link{line: i + 1, target: target})
			}
		}
	}
	return out
}

var (
	atxHeading = regexp.MustCompile(`^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$`)
	linkText   = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	htmlAnchor = regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)
)

// headingAnchors returns the anchors GitHub gives a Markdown text's headings, in order: the
// rendered text lowercased, everything but letters, digits, spaces, hyphens and underscores
// dropped, each space made a hyphen, and "-1", "-2", ... added to a repeated one. Explicit HTML
// anchors (<a name="...">) count too.
func headingAnchors(md string) []string {
	var out []string
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(md, "\n") {
		if fence.MatchString(line) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			out = append(out, m[1])
		}
		m := atxHeading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		text := linkText.ReplaceAllString(m[1], "$1")
		text = strings.NewReplacer("`", "", "*", "").Replace(text)
		var slug strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case r == ' ':
				slug.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
				slug.WriteRune(r)
			}
		}
		anchor := slug.String()
		if n := seen[anchor]; n > 0 {
			seen[anchor] = n + 1
			anchor += "-" + strconv.Itoa(n)
		} else {
			seen[anchor] = 1
		}
		out = append(out, anchor)
	}
	return out
}

// configVariables returns the variables of every env tag in pkg/config's non-test source.
func configVariables(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	dir := filepath.Join(root, "pkg", "config")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var vars []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			field, ok := n.(*ast.Field)
			if !ok || field.Tag == nil {
				return true
			}
			raw, err := strconv.Unquote(field.Tag.Value)
			require.NoError(t, err)
			tag := reflect.StructTag(raw)
			// A prefix would make the variable's name a sum of two tags; none is used today.
			_, prefixed := tag.Lookup("envPrefix")
			require.False(t, prefixed, "%s: envPrefix: teach this test to join prefixes", fset.Position(field.Pos()))
			if name, _, _ := strings.Cut(tag.Get("env"), ","); name != "" && !slices.Contains(vars, name) {
				vars = append(vars, name)
			}
			return true
		})
	}
	return vars
}
