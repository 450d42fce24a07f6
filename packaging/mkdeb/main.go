// Command mkdeb builds xlvs's Debian package from packaging/nfpm.yaml with nfpm's library
// (github.com/goreleaser/nfpm/v2, its deb packager only): `make deb` runs it.
//
//	mkdeb --config packaging/nfpm.yaml --version "$(git describe --tags --dirty)" --out dist
//
// It is a module of its own so that nfpm and what it needs (go-git, compression, PGP)
// stay out of xlvs's module: the daemon's go.mod and go.sum do not change for packaging.
// The version is git describe's, turned into a Debian version (debVersion); the package
// is written to OUT/xlvs_<version>_<arch>.deb. Paths in the configuration are relative to
// the working directory (the repository's root under make). SOURCE_DATE_EPOCH, when set,
// dates the package's files (reproducible builds).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the "deb" packager
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkdeb", flag.ContinueOnError)
	config := fs.String("config", "packaging/nfpm.yaml", "nfpm configuration")
	describe := fs.String("version", "", "the version, as `git describe --tags --dirty` prints it (required)")
	arch := fs.String("arch", runtime.GOARCH, "Debian architecture (amd64, arm64, ...)")
	out := fs.String("out", "dist", "output directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *describe == "" {
		return errors.New("--version is required (git describe --tags --dirty)")
	}
	ver, err := debVersion(*describe)
	if err != nil {
		return err
	}
	path, err := build(*config, ver, *arch, *out)
	if err != nil {
		return err
	}
	fmt.Println(path)
	return nil
}

// build packages the configuration with VERSION and ARCH substituted and returns the
// package's path.
func build(config, version, arch, outDir string) (string, error) {
	env := map[string]string{"VERSION": version, "ARCH": arch}
	cfg, err := nfpm.ParseFileWithEnvMapping(config, func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return os.Getenv(k)
	})
	if err != nil {
		return "", fmt.Errorf("%s: %w", config, err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", fmt.Errorf("%s: %w", config, err)
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("%s: %w", config, err)
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(outDir, fmt.Sprintf("%s_%s_%s.deb", info.Name, version, arch))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("package %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, nil
}
