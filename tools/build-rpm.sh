#!/bin/bash
# Build karmor-host-<version>-<release>.x86_64.rpm with rpmbuild from rpm/karmor-host.spec and a
# source tarball of this work tree (the same files the .deb is built from).
#   usage: tools/build-rpm.sh [OUTDIR]      (default: dist/)
# On Debian the build dependencies are Debian packages (debian-packages.txt, installed by
# `make deps`), which rpm's own database does not know about: hence --nodeps.
# Prints the path of the .rpm last.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$repo/dist}")
spec=$repo/rpm/karmor-host.spec
ver=$(rpmspec -q --srpm --qf '%{version}' "$spec")
top=$repo/build/rpm

rm -rf "$top"
mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS} "$out"
stage=$top/stage/karmor-host-$ver
mkdir -p "$stage"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$repo" && tar --null --ignore-failed-read -T - -cf -) | tar -C "$stage" -xf -
tar -C "$top/stage" --owner=0 --group=0 --sort=name -czf "$top/SOURCES/karmor-host-$ver.tar.gz" "karmor-host-$ver"

export PATH=/usr/sbin:/usr/bin:/sbin:/bin     # the distribution's python3 and tools
# reproducible dates (the man page), like dpkg-buildpackage does from debian/changelog
SOURCE_DATE_EPOCH=$(date -d "$(rpmspec -q --srpm --qf '%{changelogtime:date}' "$spec" 2>/dev/null || date)" +%s 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH
t0=$(date +%s)
rpmbuild --nodeps -bb --define "_topdir $top" "$spec" > "$top/build.log" 2>&1 || {
    tail -n 60 "$top/build.log" >&2
    echo "build-rpm: rpmbuild failed; full log: $top/build.log" >&2
    exit 1
}
t1=$(date +%s)
rpm=$(find "$top/RPMS" -name "karmor-host-$ver-*.rpm" | head -n 1)
mv "$rpm" "$out/"
echo "build-rpm: rpmbuild $((t1 - t0)) s"
echo "$out/$(basename "$rpm")"
