package msalcache_test

import (
	"bufio"
	"go/doc/comment"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestSnippetsCompile keeps the documentation honest: every Go snippet of
// README.md, docs/*.md and the package doc comments of the module (nested
// modules included) must appear, line for line, in a _test.go file of the
// module, where the compiler checks it on every test run. A snippet that is
// not found fails the test naming the file and the snippet's first line:
// copy it into an example (example_readme_test.go and its kin in each
// package), make it compile there, and paste the compiled text back.
//
// Lines are compared with their white space collapsed, so that gofmt's
// alignment and a Markdown file's indentation do not matter; blank lines
// are ignored. A Markdown snippet is Go when its fence says go; an indented
// block of a doc comment is Go when it looks like Go (see looksLikeGo):
// doc comments also indent shell commands, SQL and tables.
func TestSnippetsCompile(t *testing.T) {
	var tests [][]string // the normalized lines of every _test.go file
	var snippets []snippet
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(path, "_test.go"):
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			tests = append(tests, normalize(string(b)))
		case strings.HasSuffix(path, ".go"):
			s, err := docSnippets(path)
			if err != nil {
				return err
			}
			snippets = append(snippets, s...)
		case path == "README.md" || filepath.Dir(path) == "docs" && strings.HasSuffix(path, ".md"):
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			snippets = append(snippets, markdownSnippets(path, string(b))...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(snippets) < 10 {
		t.Fatalf("found only %d Go snippets: is the test running at the module root?", len(snippets))
	}
	for _, s := range snippets {
		want := normalize(s.text)
		if len(want) == 0 {
			continue
		}
		found := false
		for _, lines := range tests {
			if contains(lines, want) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: the Go snippet starting %q is in no _test.go file, so nothing compiles it", s.where, want[0])
		}
	}
}

type snippet struct {
	where string // file, and the line of a Markdown fence
	text  string
}

// fence matches a Markdown code fence and its info string.
var fence = regexp.MustCompile("^\\s*```\\s*([A-Za-z0-9_+-]*)")

func markdownSnippets(path, text string) []snippet {
	var out []snippet
	var cur *strings.Builder
	isGo := false
	start := 0
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		m := fence.FindStringSubmatch(line)
		switch {
		case m != nil && cur == nil:
			cur, isGo, start = &strings.Builder{}, m[1] == "go", n
		case m != nil:
			if isGo {
				out = append(out, snippet{where: path + ":" + strconv.Itoa(start), text: cur.String()})
			}
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return out
}

// docSnippets returns the Go code blocks of the package doc comment in the
// file at path, if it has one.
func docSnippets(path string) ([]snippet, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		return nil, err
	}
	if f.Doc == nil {
		return nil, nil
	}
	var p comment.Parser
	var out []snippet
	for _, b := range p.Parse(f.Doc.Text()).Content {
		if c, ok := b.(*comment.Code); ok && looksLikeGo(c.Text) {
			out = append(out, snippet{where: path + " (package doc)", text: c.Text})
		}
	}
	return out, nil
}

// looksLikeGo tells Go from the shell commands, SQL, URL lists and tables
// that doc comments also indent: Go snippets here declare something.
func looksLikeGo(s string) bool {
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if strings.Contains(line, ":=") || strings.HasPrefix(line, "func ") || strings.HasPrefix(line, "defer ") ||
			strings.HasPrefix(line, "if err != nil") || strings.HasPrefix(line, "var ") {
			return true
		}
	}
	return false
}

func normalize(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, strings.Join(f, " "))
		}
	}
	return out
}

func contains(lines, want []string) bool {
	for i := 0; i+len(want) <= len(lines); i++ {
		j := 0
		for j < len(want) && lines[i+j] == want[j] {
			j++
		}
		if j == len(want) {
			return true
		}
	}
	return false
}
