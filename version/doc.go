// Package version is xlvs's version, as every command's --version and the xlvs_build_info
// metric show it.
//
// # Role
//
// `make build` (and `make deb`) set it from `git describe --tags --always --dirty` with
//
//	go build -ldflags "-X xlvs/version.version=$(git describe --tags --always --dirty)"
//
// A plain `go build` in a git checkout gets the commit the Go toolchain stamps into the
// binary (vcs.revision, "-dirty" with uncommitted changes); anything else (go test, a
// build outside git) reports "devel".
//
// # Concurrency
//
// String reads only immutable data (the linker's value, the build info) and is safe for
// concurrent use.
package version
