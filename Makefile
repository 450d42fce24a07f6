# xlvs — see README.md. `sudo make demo` runs the demo testbed; `sudo make test` runs every test.
GO      ?= go
BIN     := bin
CMDS    := xlvsd xlvsadm xlvs-bench xlvs-decap
GOFLAGS ?=
TESTFLAGS ?= -race -count=1 -timeout 20m

.PHONY: all build generate demo test test-short vet fmt-check bench bench-quick clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build $(GOFLAGS) -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

# Regenerates bpf/*_bpfel.{go,o} from the C sources (needs clang, llvm, libbpf-dev).
generate:
	$(GO) generate ./bpf/...

demo: build
	./$(BIN)/xlvs-bench demo

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

# Unit, BPF and end-to-end tests. Run as root: with CI set, privileged tests fail instead
# of skipping.
test: build vet
	XLVS_BIN=$(CURDIR)/$(BIN) $(GO) test $(TESTFLAGS) ./...

test-short:
	$(GO) test -short -count=1 ./...

# The benchmark harness: xlvs against iptables/nftables DNAT, kernel forwarding and the
# AF_XDP copy-path limit, in a generator → director → sink testbed (root).
bench: build
	@command -v iptables >/dev/null || apt-get install -y -q iptables
	@command -v nft >/dev/null || apt-get install -y -q nftables
	./$(BIN)/xlvs-bench run --out bench-out

# The harness's CI smoke: 64-byte UDP and short connections, every target, under two minutes.
bench-quick: build
	./$(BIN)/xlvs-bench --quick --out bench-out

clean:
	rm -rf $(BIN) bench-out
