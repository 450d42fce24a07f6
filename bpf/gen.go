package bpf

// Regenerate the bpf2go outputs (xlvs_bpfel.go/.o from xlvs.c, decap_bpfel.go/.o from
// decap.c) after editing the C sources (needs clang, llvm-strip and libbpf-dev):
// go generate ./bpf
// The outputs are committed, so building the module needs none of those tools.
// asm/types.h lives in the multiarch include directory; clang ignores the one that is
// missing on the host, and the BPF target makes the result identical on every host.

//go:generate go tool bpf2go -tags linux -target bpfel -no-global-types xlvs xlvs.c -- -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu
//go:generate go tool bpf2go -tags linux -target bpfel -no-global-types decap decap.c -- -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu
