# xlvs — see README.md. `sudo make demo` runs the demo testbed; `sudo make test` runs every test.
GO      ?= go
BIN     := bin
CMDS    := xlvsd xlvsadm xlvs-bench xlvs-decap
GOFLAGS ?=
TESTFLAGS ?= -race -count=1 -timeout 20m

# The version every command's --version and xlvs_build_info show: git describe of the
# last release tag (vX.Y.Z), or v0.0.0-<commits>-g<hash> before the first one.
VERSION ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || \
	echo "v0.0.0-$$(git rev-list --count HEAD 2>/dev/null || echo 0)-g$$(git rev-parse --short HEAD 2>/dev/null || echo 0)$$(git diff --quiet HEAD 2>/dev/null || echo -dirty)")
LDFLAGS := -X xlvs/version.version=$(VERSION)
# Pages and package files are dated by the last commit (reproducible builds).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
DIST    := dist
DEBARCH ?= $(shell $(GO) env GOARCH)
# xlvsd's CPU profile for profile-guided optimization (`make pgo` refreshes it).
PGO     := cmd/xlvsd/default.pgo
PGOTMP  ?= /tmp/xlvs-pgo

.PHONY: all build generate demo test test-short vet fmt-check bench bench-quick clean man deb pgo

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build $(GOFLAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

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
# of skipping. Then the allocation tests again, compiled as xlvsd is: with its profile
# (PGO), whose extra inlining changes what escapes.
test: build vet
	XLVS_BIN=$(CURDIR)/$(BIN) $(GO) test $(TESTFLAGS) ./...
	$(GO) test -pgo=$(CURDIR)/$(PGO) -count=1 -run 'Allocs' ./conntrack/... ./dataplane/... ./sched/...

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

# Man pages, each from its command's own flags and help text (--help-man).
man:
	@mkdir -p $(DIST)/man
	$(GO) build -ldflags "$(LDFLAGS)" -o $(DIST)/man/.bin/ $(addprefix ./cmd/,$(CMDS))
	for c in xlvsd xlvsadm xlvs-decap; do $(DIST)/man/.bin/$$c --help-man > $(DIST)/man/$$c.8 || exit 1; done
	$(DIST)/man/.bin/xlvs-bench --help-man > $(DIST)/man/xlvs-bench.1
	rm -rf $(DIST)/man/.bin

# The Debian package dist/xlvs_<version>_<arch>.deb (packaging/nfpm.yaml): static
# binaries, units, configuration, man pages, completion, dashboard and alerts.
deb: man
	@mkdir -p $(DIST)/bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(DIST)/bin/ $(addprefix ./cmd/,$(CMDS))
	gzip -9nkf $(DIST)/man/*.[18]
	$(GO) -C packaging/mkdeb build -o $(CURDIR)/$(DIST)/mkdeb .
	./$(DIST)/mkdeb --config packaging/nfpm.yaml --version $(VERSION) --arch $(DEBARCH) --out $(DIST)

# Refreshes $(PGO), the CPU profile the Go compiler optimizes xlvsd with (profile-guided
# optimization: `go build` of ./cmd/xlvsd applies it to every package xlvsd is built
# from). The profile is of the per-packet pipeline and connection-table benchmarks on one
# core, built without a profile; refresh it after reshaping the per-packet path
# (BENCHMARKS.md, "Profile-guided optimization").
pgo:
	rm -rf $(PGOTMP) && mkdir -p $(PGOTMP)
	$(GO) test -pgo=off -c -o $(PGOTMP)/dataplane.test ./dataplane
	$(GO) test -pgo=off -c -o $(PGOTMP)/conntrack.test ./conntrack
	$(PGOTMP)/dataplane.test -test.run '^$$' -test.bench 'Pipeline(Established|Established32|Persist|New)$$' \
		-test.cpu 1 -test.benchtime 1s -test.cpuprofile $(PGOTMP)/dataplane.prof
	$(PGOTMP)/conntrack.test -test.run '^$$' -test.bench 'LookupLatency/(1Ki|1Mi)/batch|InsertBatch' \
		-test.cpu 1 -test.cpuprofile $(PGOTMP)/conntrack.prof
	$(GO) tool pprof -proto $(PGOTMP)/dataplane.prof $(PGOTMP)/conntrack.prof > $(PGO).new
	mv $(PGO).new $(PGO)
	rm -rf $(PGOTMP)

clean:
	rm -rf $(BIN) bench-out $(DIST)
