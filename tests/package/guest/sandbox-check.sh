#!/bin/bash
# Runs INSIDE karmor-host.service's sandbox: test.sh starts it as karmor-sandbox-check.service,
# a copy of the installed unit with this script as ExecStart. It checks that the hardening
# leaves the agent (and the enforcers to come) what they need, and takes away what it should.
# One line per check: "ok <what>" or "FAIL <what>"; exit 1 if anything failed.
fails=0
ok() { echo "ok $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
expect() {  # expect yes|no WHAT CMD...: CMD should succeed (yes) or fail (no)
    local want=$1 what=$2
    shift 2
    if "$@" > /dev/null 2>&1; then
        [ "$want" = yes ] && ok "$what" || bad "$what (allowed, should be denied)"
    else
        [ "$want" = no ] && ok "$what" || bad "$what (denied, should be allowed)"
    fi
}
has_cap() {  # capability number in the effective set
    local eff
    eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
    python3 -c "import sys; sys.exit(0 if int(sys.argv[1], 16) >> int(sys.argv[2]) & 1 else 1)" "$eff" "$1"
}

# --- what the agent and the enforcers need --------------------------------------------------
expect yes "CAP_SYS_ADMIN" has_cap 21
expect yes "CAP_MAC_ADMIN" has_cap 33
expect yes "CAP_PERFMON" has_cap 38
expect yes "CAP_BPF" has_cap 39
expect yes "CAP_SYS_PTRACE (other processes' /proc/<pid>/exe)" has_cap 19
expect yes "read /proc/1/exe" readlink /proc/1/exe
expect yes "pin under /sys/fs/bpf/karmor" bash -c 'mkdir /sys/fs/bpf/karmor/sandbox-check && rmdir /sys/fs/bpf/karmor/sandbox-check'
expect yes "tracefs events readable" test -d /sys/kernel/tracing/events/syscalls
expect yes "BTF readable" test -r /sys/kernel/btf/vmlinux
expect yes "securityfs LSM list" test -r /sys/kernel/security/lsm
profile=/run/karmor-sandbox-check/profile
cat > "$profile" <<'AA'
abi <abi/3.0>,
profile karmor-sandbox-check-profile flags=(complain) {
  /usr/bin/true rix,
}
AA
expect yes "load an AppArmor profile (apparmor_parser -r)" apparmor_parser -r -K "$profile"
expect yes "it is loaded" grep -q '^karmor-sandbox-check-profile ' /sys/kernel/security/apparmor/profiles
expect yes "unload it (apparmor_parser -R)" apparmor_parser -R "$profile"
expect yes "read /root (policy paths are resolved on the real tree)" ls /root
expect yes "read /home" cat /home/pkgtest/readme
expect yes "write the state directory" touch /var/lib/karmor-sandbox-check/x
expect yes "ctypes callbacks under MemoryDenyWriteExecute" \
    python3 -c 'import ctypes; f = ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 7); assert f() == 7'
expect yes "journald reachable" systemd-cat -t karmor-sandbox-check echo journal
expect yes "netlink (pyroute2)" python3 -c 'import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)'
expect yes "nftables (the firewall)" \
    python3 -c 'import nftables; rc, out, err = nftables.Nftables().cmd("list tables"); assert rc == 0, err'
expect yes "audit multicast group (CAP_AUDIT_READ: LSM denials)" \
    python3 -c 'import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9).bind((0, 1))'

# --- what the sandbox takes away ------------------------------------------------------------
expect no "write /usr" touch /usr/lib/karmor-sandbox-check
expect no "write /etc" touch /etc/karmor-sandbox-check
expect no "write /etc/apparmor.d (profiles live in the state directory)" touch /etc/apparmor.d/karmor-sandbox-check
expect no "write /home" touch /home/pkgtest/x
expect no "write elsewhere in /sys/fs/bpf" mkdir /sys/fs/bpf/karmor-sandbox-check
expect no "write /proc/sys" bash -c 'echo 1 > /proc/sys/kernel/sysrq'
expect no "CAP_SYS_MODULE" has_cap 16
expect no "CAP_SYS_BOOT" has_cap 22
expect no "CAP_SYS_TIME" has_cap 25
expect no "CAP_SETUID" has_cap 7
expect no "CAP_SYSLOG, /dev/kmsg" cat /dev/kmsg
expect no "realtime scheduling" chrt -f 1 true
expect no "the host's /tmp" test -e /tmp/pkgtest-host-tmp
expect no "device nodes beyond the basic ones" test -e /dev/vda
expect no "writable+executable memory (MemoryDenyWriteExecute)" \
    python3 -c 'import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)'
expect no "AF_PACKET sockets" python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)'
expect no "new user namespaces" unshare -U true
expect yes "a seccomp system call filter" grep -q '^Seccomp:[[:space:]]*2' /proc/self/status
expect yes "no_new_privs" grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status

echo "$fails failed"
[ "$fails" = 0 ]
