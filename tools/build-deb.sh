#!/bin/bash
# Build karmor-host_<version>_<arch>.deb with dpkg-buildpackage from a clean copy of this work
# tree (dpkg-buildpackage cleans and writes into the source tree and its parent directory,
# which must not disturb a checkout others work in), then check it with lintian.
#   usage: tools/build-deb.sh [OUTDIR]      (default: dist/)
# Prints the path of the .deb last. Fails on any lintian error; warnings are shown.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$repo/dist}")
ver=$(dpkg-parsechangelog -l "$repo/debian/changelog" -S Version)
arch=$(dpkg-architecture -q DEB_HOST_ARCH)
work=$repo/build/deb
src=$work/karmor-host-$ver

rm -rf "$work"
mkdir -p "$src" "$out"
# tracked and new (not ignored) files: what a commit of this tree would hold
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$repo" && tar --null --ignore-failed-read -T - -cf -) | tar -C "$src" -xf -

# the distribution's tools and interpreter only (not a pyenv or /usr/local python on PATH):
# the package is built for, and depends on, Debian's python3
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
t0=$(date +%s)
(cd "$src" && dpkg-buildpackage -us -uc -b) > "$work/build.log" 2>&1 || {
    tail -n 60 "$work/build.log" >&2
    echo "build-deb: dpkg-buildpackage failed; full log: $work/build.log" >&2
    exit 1
}
t1=$(date +%s)
deb=karmor-host_${ver}_${arch}.deb
changes=karmor-host_${ver}_${arch}.changes
mv "$work/$deb" "$work/$changes" "$work"/karmor-host_"${ver}"_"${arch}".buildinfo "$out"/

# lintian on the .changes checks the .deb and the .buildinfo
lintian --fail-on error --display-info --tag-display-limit 0 "$out/$changes" | tee "$work/lintian.log" || {
    echo "build-deb: lintian reports errors (above)" >&2
    exit 1
}
t2=$(date +%s)
echo "build-deb: dpkg-buildpackage $((t1 - t0)) s, lintian $((t2 - t1)) s"
echo "$out/$deb"
