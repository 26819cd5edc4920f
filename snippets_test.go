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
// README.md, docs/*.md (every Markdown file of the module) and the package
// doc comments of the module (nested modules included) must appear, line for line, in a _test.go file of the
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
	var tests []testFile
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
			tests = append(tests, testFile{path, normalize(string(b))})
		case strings.HasSuffix(path, ".go"):
			s, err := docSnippets(path)
			if err != nil {
				return err
			}
			snippets = append(snippets, s...)
		case strings.HasSuffix(path, ".md"):
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
		best, bestFile := 0, ""
		for _, f := range tests {
			if n := longestPrefix(f.lines, want); n > best {
				best, bestFile = n, f.path
			}
		}
		switch {
		case best == len(want):
		case best == 0:
			t.Errorf("%s: the Go snippet starting %q is in no _test.go file, so nothing compiles it", s.where, want[0])
		default:
			t.Errorf("%s: the Go snippet starting %q is in no _test.go file, so nothing compiles it; %s has its first %d lines, then not %q",
				s.where, want[0], bestFile, best, want[best])
		}
	}
}

type testFile struct {
	path  string
	lines []string // normalized
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
	return longestPrefix(lines, want) == len(want)
}

// longestPrefix returns how many leading lines of want appear together in
// lines, at best: all of them when lines holds the snippet.
func longestPrefix(lines, want []string) int {
	best := 0
	for i := range lines {
		j := 0
		for j < len(want) && i+j < len(lines) && lines[i+j] == want[j] {
			j++
		}
		best = max(best, j)
	}
	return best
}

// The checker itself: it must see a Markdown snippet and a doc-comment
// snippet, tell Go from shell, and find a snippet only where its lines
// are, in order and together.
func TestSnippetChecker(t *testing.T) {
	md := "text\n\n```go\nx := 1\n\n  y := x\n```\n\n```sh\ngo run ./x\n```\n"
	got := markdownSnippets("a.md", md)
	if len(got) != 1 || got[0].where != "a.md:3" || got[0].text != "x := 1\n\n  y := x\n" {
		t.Fatalf("markdownSnippets = %q", got)
	}
	if !looksLikeGo("store, err := boltstore.Open(path)\n...\n") || looksLikeGo("go run ./examples/quickstart\n") ||
		looksLikeGo("CREATE TABLE msalcache (\n    key text\n);\n") {
		t.Error("looksLikeGo tells Go from shell and SQL wrongly")
	}
	file := normalize("func f() {\n\tx := 1\n\t// gap\n\ty :=   x\n}\n")
	if !contains(file, normalize("x := 1\n// gap\ny := x")) {
		t.Error("a snippet present with other white space is not found")
	}
	if contains(file, normalize("x := 1\ny := x")) || contains(file, normalize("y := x\nx := 1")) {
		t.Error("a snippet whose lines are apart or out of order is found")
	}
}
