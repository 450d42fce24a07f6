package bench

import "testing"

// TestKernelForwards: the harness turns the director's forwarding on for xlvsd exactly
// when its flags have the fast path forwarded by the kernel, in either flag form.
func TestKernelForwards(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--fastpath"}, false},
		{[]string{"--fastpath", "--fastpath-forward", "kernel"}, true},
		{[]string{"--fastpath", "--fastpath-forward=kernel"}, true},
		{[]string{"--fastpath", "--fastpath-forward", "xdp"}, false},
		{[]string{"--fastpath-forward"}, false},
		{[]string{"--batch", "kernel"}, false},
	} {
		if got := kernelForwards(tc.args); got != tc.want {
			t.Errorf("kernelForwards(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
