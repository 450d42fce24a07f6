package testbed

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testTimeout bounds each privileged test.
const testTimeout = 30 * time.Second

// requireRoot skips a privileged test when not root, except under CI (CI set and
// non-empty), where a test that cannot run is a failure.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root (network namespaces), and CI is set: not skipping")
	}
	t.Skip("needs root (network namespaces)")
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newTestNS makes a namespace removed at cleanup.
func newTestNS(t *testing.T, prefix string) *NS {
	t.Helper()
	ns, err := NewNS(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Errorf("close %s: %v", ns.Name(), err)
		}
	})
	return ns
}

// leftovers lists entries of NetnsDir made by this process with the given prefix.
func leftovers(t *testing.T, prefix string) []string {
	t.Helper()
	ents, err := os.ReadDir(NetnsDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "xlvs-"+prefix+"-") && strings.Contains(e.Name(), "-"+strconv.Itoa(os.Getpid())+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}
