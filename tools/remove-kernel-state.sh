#!/bin/sh
# Remove the enforcement karmor-host leaves in the kernel on purpose while it is merely stopped
# or restarted (so that a restart has no gap). The package runs this when it is removed (deb
# prerm, rpm %preun), after the service has stopped: without the agent nothing would manage
# that state any more. Installed as /usr/lib/karmor-host/remove-kernel-state. Idempotent.
#
# 1. `karmor-host run --cleanup`: each enforcer removes what it left, the way it knows is safe
#    (BPF-LSM: its pins; SELinux: restore every label it set, then remove its module).
# 2. A sweep for what is ours by name, in case 1 could not run or an enforcer of another
#    version left something (docs/packaging.md, "Kernel state"):
#      BPF       everything pinned under /sys/fs/bpf/karmor/
#      AppArmor  loaded profiles whose names start with "karmor" (karmor-global, karmor-src-*)
#    SELinux modules are deliberately not swept: removing the module before the labels are
#    restored would leave files in types no policy defines.
set -u
rc=0
say() { echo "karmor-host: $*"; }

if [ -x /usr/bin/karmor-host ]; then
    # no byte code: the package manager is about to remove (or has removed) the __pycache__ dirs
    PYTHONDONTWRITEBYTECODE=1 /usr/bin/karmor-host run --cleanup || rc=1
fi

BPFFS_DIR=/sys/fs/bpf/karmor
if [ -e "$BPFFS_DIR" ]; then
    say "unpinning $BPFFS_DIR"
    rm -rf "$BPFFS_DIR" || rc=1
fi

# unload by name through securityfs (no profile text needed); lines look like
# "karmor-global (enforce)"; children (a//b) go with their parent
AA=/sys/kernel/security/apparmor
if [ -r "$AA/profiles" ] && [ -e "$AA/.remove" ]; then
    for name in $(sed -n 's/^\(karmor[^ /]*\) (.*)$/\1/p' "$AA/profiles"); do
        say "unloading AppArmor profile $name"
        printf '%s' "$name" > "$AA/.remove" || rc=1
    done
fi
exit $rc
