// Package boundary holds the tests that keep the module's seams where
// ARCHITECTURE.md draws them: which packages may make system calls, which
// modules the build may pull in, what the public packages may expose, and
// how long a function may be (funclen_test.go).
// They read the source and go.mod; a change that crosses a seam fails here
// and has to widen a list below (or testdata/modules.txt) in review.
package boundary

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/unroot/unroot"

// unixAllowed may import golang.org/x/sys/unix: the system-call layer, and
// the loops that are nothing but system calls.
var unixAllowed = []string{
	"internal/sys",            // the syscall boundary: swappable funcs
	"internal/relay",          // the epoll/splice loop
	"internal/seccomp",        // seccomp filters and notifications
	"internal/bypass",         // the bypass's socket calls
	"network/internal/nstest", // test-only: namespaces for driver tests
}

// syscallAllowed may import package syscall, for errnos, signals, wait
// statuses and SysProcAttr; anything more goes through internal/sys.
var syscallAllowed = []string{
	"",                        // unroot: clone flags, wait statuses
	"bench/cmd/unroot-bench",  // the harness: credentials, process groups
	"cmd/unroot",              // exec of the real docker-proxy, signals
	"doctor",                  // errnos, xattrs, statfs of the probes
	"examples/httpd-rootless", // signals
	"internal/cgroup",         // ESRCH
	"internal/childinit",      // ForkExec, Wait4, Kill: the init's process work
	"internal/handshake",      // SOCK_SEQPACKET pairs and SCM_RIGHTS
	"internal/netconf",        // address families
	"internal/notify",         // unixgram credentials
	"internal/operr",          // Errno
	"internal/sigproxy",       // signals
	"internal/sockpool",       // socket families and fds
	"internal/testutil",       // test-only: a bound, never-listening port
	"internal/spawn",          // SysProcAttr for the clone
	"internal/statedir",       // flock
	"network/internal/helper", // SysProcAttr, signals for helpers
	"network/internal/nstest", // test-only
	"network/netstack",        // tap fds
	"port/builtin",            // errnos and socket options of the listeners
	"rootless",                // signals, exec
}

type pkg struct {
	rel     string               // directory relative to the module root; "" for the root
	imports map[string]bool      // import paths of its non-test files
	files   map[string]*ast.File // non-test files by path
}

// load parses every non-test Go file of the module (skipping testdata).
func load(t *testing.T) map[string]*pkg {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	pkgs := map[string]*pkg{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || strings.HasPrefix(n, ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		if rel == "." {
			rel = ""
		}
		p := pkgs[rel]
		if p == nil {
			p = &pkg{rel: rel, imports: map[string]bool{}, files: map[string]*ast.File{}}
			pkgs[rel] = p
		}
		for _, im := range f.Imports {
			ip, _ := strconv.Unquote(im.Path.Value)
			p.imports[ip] = true
		}
		full, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		p.files[path] = full
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 20 {
		t.Fatalf("found only %d packages under %s", len(pkgs), root)
	}
	return pkgs
}

// A package outside the lists that makes system calls itself fails here:
// give it an internal/sys function instead, or widen the list in review.
func TestSyscallBoundary(t *testing.T) {
	for _, p := range load(t) {
		if p.imports["golang.org/x/sys/unix"] && !slices.Contains(unixAllowed, p.rel) {
			t.Errorf("%s imports golang.org/x/sys/unix: only %v may; use internal/sys", name(p.rel), unixAllowed)
		}
		if p.imports["syscall"] && !slices.Contains(syscallAllowed, p.rel) {
			t.Errorf("%s imports syscall: only the packages in syscallAllowed may; use internal/sys, or add it there with the reason", name(p.rel))
		}
	}
}

func name(rel string) string {
	if rel == "" {
		return module
	}
	return module + "/" + rel
}

// public reports whether a package is part of the API embedders import.
func public(rel string) bool {
	if rel == "" {
		return true
	}
	for _, part := range strings.Split(rel, "/") {
		if part == "internal" || part == "cmd" || part == "test" || part == "bench" || part == "examples" {
			return false
		}
	}
	return true
}

// The public packages expose no internal type: no exported function,
// method, type or field mentions one (an embedder could not name it).
func TestPublicAPIHasNoInternalTypes(t *testing.T) {
	for _, p := range load(t) {
		if !public(p.rel) {
			continue
		}
		for path, f := range p.files {
			internal := map[string]string{} // local name -> import path
			for _, im := range f.Imports {
				ip, _ := strconv.Unquote(im.Path.Value)
				if !strings.Contains(ip, "/internal/") && !strings.HasSuffix(ip, "/internal") {
					continue
				}
				local := ip[strings.LastIndex(ip, "/")+1:]
				if im.Name != nil {
					local = im.Name.Name
				}
				internal[local] = ip
			}
			if len(internal) == 0 {
				continue
			}
			check := func(where string, n ast.Node) {
				if n == nil {
					return
				}
				ast.Inspect(n, func(n ast.Node) bool {
					if sel, ok := n.(*ast.SelectorExpr); ok {
						if id, ok := sel.X.(*ast.Ident); ok && internal[id.Name] != "" {
							t.Errorf("%s: exported %s uses %s.%s from %s", filepath.Base(path), where, id.Name, sel.Sel.Name, internal[id.Name])
						}
					}
					return true
				})
			}
			for _, d := range f.Decls {
				switch d := d.(type) {
				case *ast.FuncDecl:
					if !d.Name.IsExported() || d.Recv != nil && !exportedRecv(d.Recv) {
						continue
					}
					check(d.Name.Name, d.Type)
				case *ast.GenDecl:
					for _, s := range d.Specs {
						switch s := s.(type) {
						case *ast.TypeSpec:
							if s.Name.IsExported() {
								checkType(s.Name.Name, s.Type, check)
							}
						case *ast.ValueSpec:
							for _, n := range s.Names {
								if n.IsExported() {
									check(n.Name, s.Type)
								}
							}
						}
					}
				}
			}
		}
	}
}

// checkType checks the exported parts of a type: every field of a struct
// that is exported, every method of an interface, the whole of anything
// else.
func checkType(name string, e ast.Expr, check func(string, ast.Node)) {
	switch e := e.(type) {
	case *ast.StructType:
		for _, f := range e.Fields.List {
			if len(f.Names) == 0 { // embedded
				check(name+" (embedded)", f.Type)
			}
			for _, n := range f.Names {
				if n.IsExported() {
					check(name+"."+n.Name, f.Type)
				}
			}
		}
	default:
		check(name, e)
	}
}

func exportedRecv(r *ast.FieldList) bool {
	if len(r.List) == 0 {
		return false
	}
	t := r.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	if ix, ok := t.(*ast.IndexExpr); ok {
		t = ix.X
	}
	id, ok := t.(*ast.Ident)
	return ok && id.IsExported()
}

// A new module in go.mod fails here until testdata/modules.txt names it:
// every dependency is a decision, seen in review.
func TestModulesGolden(t *testing.T) {
	got := requires(t, "../../go.mod")
	b, err := os.ReadFile("testdata/modules.txt")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			want = append(want, l)
		}
	}
	for _, m := range got {
		if !slices.Contains(want, m) {
			t.Errorf("go.mod requires %s, which test/boundary/testdata/modules.txt does not list: add it there if the dependency is meant", m)
		}
	}
	for _, m := range want {
		if !slices.Contains(got, m) {
			t.Errorf("test/boundary/testdata/modules.txt lists %s, which go.mod no longer requires: remove it", m)
		}
	}
}

// requires lists the module paths go.mod requires, direct and indirect.
func requires(t *testing.T, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mods []string
	block := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "require (":
			block = true
		case block && l == ")":
			block = false
		case block && l != "" && !strings.HasPrefix(l, "//"):
			mods = append(mods, strings.Fields(l)[0])
		case strings.HasPrefix(l, "require "):
			mods = append(mods, strings.Fields(l)[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(mods)
	return mods
}

// go mod tidy leaves go.mod and go.sum as they are.
func TestGoModTidy(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not in PATH: %v (the tests run under the go command, which should be there)", err)
	}
	cmd := exec.Command(gobin, "mod", "tidy", "-diff")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("go mod tidy would change the module files (%v): run go mod tidy and commit the result\n%s", err, out)
	}
}

// Whether a test that cannot run here skips or fails is decided in one
// place, internal/testutil (skip outside CI, fail in CI); a test that reads
// CI itself would make its own rule.
func TestOneSkipOrFailRule(t *testing.T) {
	root, _ := filepath.Abs("../..")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		if strings.Contains(path, "/internal/testutil/") || strings.HasSuffix(path, "/test/boundary/boundary_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), `Getenv("CI")`) {
			rel, _ := filepath.Rel(root, path)
			t.Errorf("%s reads $CI itself: use testutil.Unavailable, RequireRoot, RequireTool or userns.Require", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
