// Package packaging holds xlvs's Debian packaging: nfpm.yaml (built by `make deb` with
// mkdeb, a module of its own that uses nfpm's library), the systemd units, the default
// configuration, the maintainer scripts and xlvsadm's bash completion.
//
// Its tests: completion_test.go keeps the completion's option lists equal to xlvsadm's
// -h and the units' capability sets consistent; install_test.go (build tag debtest, run
// by .ci/run with XLVS_DEB set to the built package) installs the package with dpkg,
// checks the files, user, groups, units (systemd-analyze verify) and man pages, runs
// the installed xlvsd as the unit runs it — as the user xlvs with exactly the unit's
// capabilities (setpriv), NoNewPrivileges, its EnvironmentFile's flags — in a NAT
// testbed and forwards HTTP through it, shows each capability is needed, checks the
// system calls and socket families it used against the unit's filters (strace), and
// purges the package again, checking nothing is left.
package packaging
