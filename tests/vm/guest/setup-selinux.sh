# Sourced by run-guest.sh in the `selinux` guest. Loads the reduced policy store the host built
# (tests/vm/selinux_store.py), unpacked onto tmpfs over /etc/selinux and /var/lib/selinux (a
# store on 9p is slow: it is mounted sync). SELinux stays permissive (enforcing=0 on the kernel
# command line) until a test switches it on; files that need labels go on a tmpfs mounted after
# the load (the 9p root keeps no labels).
store="$out/selinux-store.tar"
[ -f "$store" ] || { say "no SELinux store $store"; return 1; }
# Without auditd the kernel prints AVC records, rate limited: keep them all (dmesg.txt, kmsg).
echo 0 >/proc/sys/kernel/printk_ratelimit
for d in /etc/selinux /var/lib/selinux; do
    mount -t tmpfs -o mode=0755 tmpfs "$d" || return 1
done
tar -x -f "$store" -C / || { say "cannot unpack $store"; return 1; }
load_policy -i || { say "load_policy failed"; return 1; }
say "SELinux policy loaded ($(getenforce), $(tr -d '\0' </proc/self/attr/current))"
