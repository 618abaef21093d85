#!/bin/bash
# Build the bootable Debian base image the package test boots (run as root; tests/package/vm.py
# calls it and caches the result by a hash of everything that goes in).
#   usage: build-base.sh OUTDIR
#   env:   KVER (guest kernel release, modules for the initramfs), DEPS (apt-get satisfy string:
#          the .deb's Depends and Recommends), SUITE, MIRROR, SECURITY_MIRROR, DEB_CACHE
# Produces OUTDIR/base.img (raw ext4, label pkgroot) and OUTDIR/initrd.gz. The warm-up boot is
# done afterwards by the caller, with the same QEMU runner the tests use.
#
# The image is what a user has after installing Debian 12 and `apt upgrade`: debootstrap
# minbase + systemd, udev, dbus, AppArmor, with bookworm-updates/-security applied, and the
# package's dependencies pre-installed (resolved by apt from the .deb's own Depends/Recommends,
# so a missing dependency in debian/control still shows up as a failing agent in the guest).
# Package lists are dropped: `apt install ./karmor-host_*.deb` then works offline.
set -euo pipefail
OUT=$1
HERE=$(dirname "$(realpath "$0")")
: "${KVER:?KVER: the guest kernel release}"
SUITE=${SUITE:-bookworm}
DEPS=${DEPS:-}
src=/etc/apt/sources.list.d/debian.sources
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit}' "$src" 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(awk '/^URIs:/{u=$2} /^Suites:.*-security/{print u; exit}' "$src" 2>/dev/null || true)}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DEB_CACHE=${DEB_CACHE:-$OUT/debs}
R=$OUT/rootfs
ts() { date +%s; }
t0=$(ts)

rm -rf "$R"
mkdir -p "$R" "$DEB_CACHE"
debootstrap --variant=minbase --cache-dir="$DEB_CACHE" \
    --include=systemd,systemd-sysv,dbus,udev,procps,apparmor,kmod \
    "$SUITE" "$R" "$MIRROR" > "$OUT/debootstrap.log" 2>&1 || {
    tail -n 30 "$OUT/debootstrap.log" >&2; exit 1; }
t1=$(ts); echo "build-base: debootstrap $((t1 - t0)) s"

echo pkgvm > "$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpkgvm\n' > "$R/etc/hosts"
echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" > "$R/etc/fstab"
chroot "$R" passwd -d root > /dev/null     # empty root password on the serial console (debugging)
cat > "$R/etc/apt/sources.list" <<SRC
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SRC
in_root() { chroot "$R" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
in_root apt-get update -qq
# debootstrap takes only the release; a user's system also has the point updates
in_root apt-get -y -q -o Dpkg::Use-Pty=0 dist-upgrade > "$OUT/upgrade.log" 2>&1 || {
    tail -n 30 "$OUT/upgrade.log" >&2; exit 1; }
if [ -n "$DEPS" ]; then
    in_root apt-get satisfy -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "$DEPS" > "$OUT/deps.log" 2>&1 || {
        tail -n 30 "$OUT/deps.log" >&2; exit 1; }
fi
in_root apt-get clean
# without lists, every guest apt call saves ~10 s of parsing under TCG, and `apt install
# ./x.deb` resolves against what is installed: offline by construction
find "$R/var/lib/apt/lists" -maxdepth 1 -type f ! -name lock -delete
mkdir -p "$R/var/log/journal"                # persistent journal: boot 2 can read boot 1
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
         dpkg-db-backup.timer man-db.timer e2scrub_reap.service getty@tty1.service; do
    chroot "$R" systemctl mask "$u" > /dev/null 2>&1 || true
done
# the guest kernel's config and modules, as an installed linux-image would leave them: BPF
# tools read the config; the agent's firewall needs nf_tables, which the kernel loads on demand
mkdir -p "$R/boot" "$R/lib/modules"
cp "/boot/config-$KVER" "$R/boot/"
cp -a "/lib/modules/$KVER" "$R/lib/modules/"
t2=$(ts); echo "build-base: configuration and dependencies $((t2 - t1)) s"

# the test harness: runs test.sh from the payload disk once the boot is complete
install -m 0755 "$HERE/pkgtest-run" "$R/usr/local/sbin/pkgtest-run"
install -m 0644 "$HERE/pkgtest.service" "$R/etc/systemd/system/pkgtest.service"
chroot "$R" systemctl enable pkgtest.service > /dev/null 2>&1

"$HERE/mkinitrd.sh" "$OUT/initrd.gz" "$KVER"
rm -f "$OUT/base.img"
mkfs.ext4 -q -F -L pkgroot -d "$R" "$OUT/base.img" 3G
t3=$(ts); echo "build-base: initramfs and image $((t3 - t2)) s"
du -sh "$R" | sed 's/^/build-base: rootfs /'
rm -rf "$R"
