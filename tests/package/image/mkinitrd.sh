#!/bin/bash
# A tiny busybox initramfs for the guest kernel: load the virtio disk and ext4 modules, mount
# /dev/vda and switch_root to systemd. (Debian's own initramfs works too, but runs udev in
# the initramfs and costs a few seconds per boot under TCG.)
#   usage: mkinitrd.sh OUT.gz KVER
set -euo pipefail
OUT=$1 KVER=$2
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
mkdir -p "$D"/{bin,dev,proc,sys,newroot,mod}
cp /bin/busybox "$D/bin/busybox"            # busybox-static
# modules in load order, dependencies first, as modprobe resolves them for that kernel
: > "$D/mod/order"
for m in virtio_pci virtio_blk crc32c_generic ext4; do
    modprobe -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
    name=$(basename "$ko"); name=${name%%.ko*}
    case "$ko" in
        *.ko.xz) xz -dc "$ko" > "$D/mod/$name.ko" ;;
        *.ko.zst) zstd -qdc "$ko" > "$D/mod/$name.ko" ;;
        *) cp "$ko" "$D/mod/$name.ko" ;;
    esac
    echo "$name" >> "$D/mod/order"
done
cat > "$D/init" <<'SH'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs dev /dev
for m in $($B cat /mod/order); do
    $B insmod /mod/$m.ko 2>/dev/null || echo "initrd: insmod $m failed"
done
root=/dev/vda; flags=rw
for a in $($B cat /proc/cmdline); do
    case $a in root=/dev/*) root=${a#root=} ;; ro) flags=ro ;; esac
done
i=0; while [ ! -b "$root" ] && [ $i -lt 200 ]; do $B sleep 0.05; i=$((i + 1)); done
$B mount -t ext4 -o $flags "$root" /newroot || { echo "initrd: cannot mount $root"; exec $B sh; }
$B mount --move /dev /newroot/dev
$B umount /proc
exec $B switch_root /newroot /sbin/init
SH
chmod 755 "$D/init"
(cd "$D" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT"
echo "mkinitrd: $(wc -l < "$D/mod/order") modules, $(du -k "$OUT" | cut -f1) KiB"
