#!/bin/sh
# systemd generator (installed as karmor-host-generator in the system-generators directory):
# on a host where SELinux is enabled, loosen karmor-host.service's sandbox just enough for the
# SELinux enforcer, which the hardened unit would break:
#   - it sets file labels (security.selinux xattrs) on the files rules name, anywhere: that
#     needs writable mounts, so ProtectSystem=, ProtectHome= and PrivateTmp= must be off;
#   - it runs semodule, which on Fedora-family policies transitions into semanage_t: the
#     kernel refuses such a transition under no_new_privs, so NoNewPrivileges= must be off.
# Everywhere else (AppArmor, BPF-LSM, no LSM) the unit stays as shipped. docs/packaging.md.
# Generators run at boot and on every daemon-reload, before units start; argument 1 is the
# "normal" output directory (drop-ins there lose to an admin's in /etc/systemd/system).
#   env (tests only): KARMOR_SELINUXFS  where selinuxfs is (default /sys/fs/selinux)
set -eu
out=${1:-}
[ -n "$out" ] || exit 0
selinuxfs=${KARMOR_SELINUXFS:-/sys/fs/selinux}
# enabled = selinuxfs mounted with a policy loaded (permissive or enforcing)
[ -e "$selinuxfs/enforce" ] || exit 0
mkdir -p "$out/karmor-host.service.d"
cat > "$out/karmor-host.service.d/50-selinux-enforcer.conf" <<'CONF'
# Written by karmor-host-generator because SELinux is enabled on this host: the SELinux
# enforcer relabels files anywhere and runs semodule (see /usr/share/doc/karmor-host/packaging.md).
[Service]
ProtectSystem=no
ProtectHome=no
PrivateTmp=no
NoNewPrivileges=no
CONF
