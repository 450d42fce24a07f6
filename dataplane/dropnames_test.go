package dataplane

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"
)

// TestDropNamesMatchCounters: each Drop constant is named as the counter operators see
// (DropTTLExpired counts "ttl_expired"): the constant's name without "Drop", lower-cased,
// is the counter's name without its underscores. The constants are read from stats.go's
// source, in declaration order, which is their value order (iota).
func TestDropNamesMatchCounters(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "stats.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, decl := range f.Decls {
		g, ok := decl.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST || len(g.Specs) == 0 {
			continue
		}
		if first := g.Specs[0].(*ast.ValueSpec); len(first.Names) == 0 || first.Names[0].Name != "DropMalformed" {
			continue
		}
		for _, s := range g.Specs {
			for _, n := range s.(*ast.ValueSpec).Names {
				if strings.HasPrefix(n.Name, "Drop") {
					names = append(names, n.Name)
				}
			}
		}
	}
	if len(names) != int(numDrops) {
		t.Fatalf("found %d Drop constants in stats.go (%v), want numDrops = %d", len(names), names, numDrops)
	}
	for i, name := range names {
		counter := Drop(i).String()
		if got, want := strings.ToLower(strings.TrimPrefix(name, "Drop")), strings.ReplaceAll(counter, "_", ""); got != want {
			t.Errorf("%s counts %q: rename the constant to match the counter (the counter is what metrics show)", name, counter)
		}
	}
}
