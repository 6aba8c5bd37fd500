package boundary

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// maxFuncLines is the longest a function may be, counted from its func
// line to its closing brace, test files included: a longer one reads
// better as named steps.
const maxFuncLines = 100

// longFuncAllowed lists the functions, as "path/file.go Recv.Name", that
// are still over maxFuncLines while someone splits them. It only shrinks:
// an entry that is no longer long fails the test until it is removed.
var longFuncAllowed = map[string]bool{}

// longFunc is a function over maxFuncLines.
type longFunc struct {
	pos   token.Position // where its func line is
	name  string         // Recv.Name or Name
	lines int
}

func (l longFunc) key(root string) string {
	rel, err := filepath.Rel(root, l.pos.Filename)
	if err != nil {
		rel = l.pos.Filename
	}
	return filepath.ToSlash(rel) + " " + l.name
}

// longFuncs lists the functions of f over max lines.
func longFuncs(fset *token.FileSet, f *ast.File, max int) []longFunc {
	var long []longFunc
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Body == nil {
			continue
		}
		start := fset.Position(fn.Pos()) // the func keyword, not the doc comment
		if n := fset.Position(fn.End()).Line - start.Line + 1; n > max {
			long = append(long, longFunc{pos: start, name: funcName(fn), lines: n})
		}
	}
	return long
}

// funcName is fn's name as the reviewers write it: Recv.Name for a method.
func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	t := fn.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	switch x := t.(type) {
	case *ast.IndexExpr:
		t = x.X
	case *ast.IndexListExpr:
		t = x.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name + "." + fn.Name.Name
	}
	return fn.Name.Name
}

// moduleLongFuncs parses every Go file of the module, tests included
// (skipping testdata and hidden directories), and lists its long functions.
func moduleLongFuncs(t *testing.T, root string) []longFunc {
	t.Helper()
	fset := token.NewFileSet()
	var long []longFunc
	files := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || n == "vendor" || strings.HasPrefix(n, ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		long = append(long, longFuncs(fset, f, maxFuncLines)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("found only %d Go files under %s", files, root)
	}
	return long
}

// No function is over maxFuncLines lines unless longFuncAllowed names it;
// longFuncAllowed names none that is not.
func TestFunctionLength(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, l := range moduleLongFuncs(t, root) {
		k := l.key(root)
		seen[k] = true
		if !longFuncAllowed[k] {
			t.Error(longFuncMessage(root, l))
		}
	}
	for k := range longFuncAllowed {
		if !seen[k] {
			t.Errorf("test/boundary: longFuncAllowed lists %q, which is no longer over %d lines (or is gone): remove it from the list", k, maxFuncLines)
		}
	}
}

func longFuncMessage(root string, l longFunc) string {
	rel, err := filepath.Rel(root, l.pos.Filename)
	if err != nil {
		rel = l.pos.Filename
	}
	return fmt.Sprintf("%s:%d: func %s is %d lines, over the limit of %d: split it into named steps (functions or methods that each do one thing)",
		filepath.ToSlash(rel), l.pos.Line, l.name, l.lines, maxFuncLines)
}

// The check catches a long function wherever it is, counts from the func
// line (not the doc comment) to the closing brace, and names methods by
// their receiver.
func TestLongFuncsSelfCheck(t *testing.T) {
	body := func(n int) string { return strings.Repeat("\tx++\n", n) }
	src := "package p\n\n" +
		"// short has a long doc comment\n" + strings.Repeat("//\n", 200) +
		"func short() {\n" + body(98) + "}\n\n" + // 100 lines: allowed
		"func long() {\n" + body(99) + "}\n\n" + // 101 lines
		"type T[A any] struct{}\n\n" +
		"func (t *T[A]) method() {\n\tf := func() {\n" + body(150) + "\t}\n\tf()\n}\n\n" + // 155 lines
		"func decl()\n" // no body
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "/m/p/p.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	got := longFuncs(fset, f, maxFuncLines)
	var names []string
	for _, l := range got {
		names = append(names, fmt.Sprintf("%s %d", l.name, l.lines))
	}
	if want := []string{"long 101", "T.method 155"}; !slices.Equal(names, want) {
		t.Fatalf("longFuncs found %q, want %q", names, want)
	}
	msg := longFuncMessage("/m", got[0])
	for _, part := range []string{"p/p.go:305:", "func long", "101 lines", "split it into named steps"} {
		if !strings.Contains(msg, part) {
			t.Errorf("message %q lacks %q", msg, part)
		}
	}
	if k := got[1].key("/m"); k != "p/p.go T.method" {
		t.Errorf("allowlist key %q, want %q", k, "p/p.go T.method")
	}
}
