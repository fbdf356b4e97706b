// Package debpkg holds the tests of tobira's Debian packages (make package,
// deploy/debian). TestPackages builds the packages of two versions,
// installs, upgrades, removes and purges them in a Debian 12 root made with
// debootstrap, and runs the arm64 and armhf binaries under qemu-user-static;
// TestVersion checks how a git describe becomes a Debian version.
//
// The tests need root, debootstrap, qemu-user-static and the cross
// compilers (scripts/install-deps test installs them). Without them they
// skip, naming what is missing; with CI=true they fail instead.
//
// The debootstrapped root is cached as a tarball under the user's cache
// directory (os.UserCacheDir()/tobira, or $TMPDIR/tobira without a home), so
// only the first run downloads it;
// TOBIRA_DEBIAN_MIRROR overrides the mirror (default http://deb.debian.org/debian).
package debpkg
