#!/bin/bash
# Runs INSIDE a VM guest booted by tests/vm/harness.py (virtme-ng: the host's root is shared
# read-only, OUT is the one read-write directory shared with the host).
#   usage: run-guest.sh REPO OUT CONFIG BUDGET [pytest args...]
# Prepares what the guest tests expect (the Python image, securityfs, bpffs, a standalone
# journald), runs pytest over tests/vm/guest with at most BUDGET seconds, and leaves in OUT:
#   report.jsonl (written by tests/vm/guest/conftest.py), journal.txt, dmesg.txt, rc
# BUDGET "setup" only prepares the guest (for an interactive shell) and returns.
set -u
if [ $# -lt 4 ]; then
    echo "usage: $0 REPO OUT CONFIG BUDGET [pytest args...]" >&2
    exit 2
fi
repo=$1 out=$2 config=$3 budget=$4
shift 4

say() { echo "karmor-vm: uptime=$(cut -d' ' -f1 /proc/uptime)s $*"; }

finish() {
    # An enforcing SELinux forbids creating files on the unlabelled 9p work dir.
    [ -w /sys/fs/selinux/enforce ] && echo 0 >/sys/fs/selinux/enforce
    journalctl --no-pager -o short-monotonic >"$out/journal.txt" 2>&1
    dmesg >"$out/dmesg.txt" 2>&1
    echo "$1" >"$out/rc"
    say "done rc=$1"
    exit "$1"
}

say "config=$config kernel=$(uname -r)"

# The Python trees, from the squashfs image the host attached as a disk, over their own paths
# (OUT/pyimage.list: "<name in image> <path>" per line; see tests/vm/harness.py).
if [ -s "$out/pyimage.list" ]; then
    dev=
    for d in /dev/vd? /dev/sd?; do
        [ -b "$d" ] && [ "$(head -c4 "$d" 2>/dev/null)" = hsqs ] && { dev=$d; break; }
    done
    [ -n "$dev" ] || { say "no squashfs disk found for the Python image"; finish 94; }
    img=/run/karmor-vm/pyimage
    mkdir -p "$img"
    modprobe squashfs 2>/dev/null
    mount -t squashfs -o ro "$dev" "$img" || { say "cannot mount the Python image $dev"; finish 94; }
    while read -r name path; do
        mount --bind "$img/$name" "$path" || { say "cannot bind $img/$name on $path"; finish 94; }
    done <"$out/pyimage.list"
    say "python image $dev mounted"
fi

mountpoint -q /sys/kernel/security || mount -t securityfs securityfs /sys/kernel/security ||
    { say "cannot mount securityfs"; finish 90; }
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf ||
    { say "cannot mount bpffs"; finish 91; }
say "lsm=$(cat /sys/kernel/security/lsm)"

# The configuration's own set-up, if it has one (sourced: it may use say and export variables).
setup="$repo/tests/vm/guest/setup-$config.sh"
if [ -f "$setup" ]; then
    # shellcheck source=/dev/null
    . "$setup" || { say "setup-$config.sh failed"; finish 95; }
fi

# A standalone journald (PID 1 is virtme's init, not systemd). /run and /var/log are tmpfs here.
mkdir -p /run/systemd/journal /var/log/journal
/lib/systemd/systemd-journald </dev/null >"$out/journald.log" 2>&1 &
for _ in $(seq 1 100); do
    [ -S /run/systemd/journal/socket ] && break
    sleep 0.1
done
[ -S /run/systemd/journal/socket ] || { say "journald did not come up"; finish 92; }
say "journald up"

if [ "$budget" = setup ]; then
    say "set up; not running pytest"
    exit 0
fi

cd "$repo" || finish 93
export KARMOR_VM_GUEST=1 KARMOR_VM_CONFIG="$config" KARMOR_VM_OUT="$out"
export KARMOR_VM_REPORT="$out/report.jsonl"
# The repo is read-only here: no bytecode, no cache dir.
export PYTHONDONTWRITEBYTECODE=1
# SIGINT on overrun: pytest then reports the test it was in and writes its final report line.
timeout -s INT -k 20 "$budget" .venv/bin/python -m pytest -p no:cacheprovider -q tests/vm/guest "$@"
finish $?
