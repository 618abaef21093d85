#!/bin/bash
# Not part of `make test`: the experiment behind the hardening choices in docs/packaging.md.
# Run by hand (about 10 minutes under TCG):
#     .venv/bin/python -m tests.package.vm --run tests/package/guest/hardening-matrix.sh
# Installs the .deb, then for each candidate option: adds it (or takes something away) with a
# drop-in, restarts the agent, and records whether it still gets ready and still raises an
# alert for a dropped-in policy. Prints one line per option; details in the journal dump.
set -u
. ./lib.sh
export DEBIAN_FRONTEND=noninteractive
apt install -y ./karmor-host_*_amd64.deb > /dev/null 2>&1 || { echo "install failed"; exit 1; }
mkdir -p /etc/pkgtest && echo audited > /etc/pkgtest/audited.txt
install -m 0644 policies/pkgtest-audit.yaml /etc/karmor/policies/
DROPIN=/etc/systemd/system/karmor-host.service.d/matrix.conf
mkdir -p "$(dirname "$DROPIN")"

try() {  # try "LABEL" "drop-in lines..."
    local label=$1 body=$2 mark ready alert err
    printf '[Service]\n%b\n' "$body" > "$DROPIN"
    systemctl daemon-reload
    mark=$(journal_mark)
    if timeout 90 systemctl restart "$UNIT" 2> /dev/null && wait_for 10 policy_listed pkgtest-audit-read > /dev/null; then
        ready=ready
        cat /etc/pkgtest/audited.txt > /dev/null
        if wait_for 15 has_alert "$mark" KARMOR_POLICY_NAME=pkgtest-audit-read > /dev/null; then alert=alert; else alert=NO-ALERT; fi
    else
        ready=NOT-READY
        alert=-
    fi
    err=$(journalctl -u "$UNIT" --since="$mark" -p err -o cat --no-pager | head -n 2 | tr '\n' ' ' | cut -c1-200)
    printf '%-58s %-9s %-8s %s\n' "$label" "$ready" "$alert" "$err"
}

try "baseline (the shipped unit)" ""
try "MemoryDenyWriteExecute=yes" "MemoryDenyWriteExecute=yes"
try "ProtectHostname=yes" "ProtectHostname=yes"
try "ProtectProc=invisible" "ProtectProc=invisible"
try "ProcSubset=pid" "ProcSubset=pid"
try "PrivateNetwork=yes" "PrivateNetwork=yes"
try "PrivateUsers=yes" "PrivateUsers=yes"
try "IPAddressDeny=any" "IPAddressDeny=any"
try "RestrictAddressFamilies=AF_UNIX" "RestrictAddressFamilies=\nRestrictAddressFamilies=AF_UNIX"
try "RestrictAddressFamilies=AF_UNIX AF_NETLINK" "RestrictAddressFamilies=\nRestrictAddressFamilies=AF_UNIX AF_NETLINK"
try "SystemCallFilter=~@privileged (on top)" "SystemCallFilter=~@privileged"
try "SystemCallFilter=~@mount (on top)" "SystemCallFilter=~@mount"
try "SystemCallFilter=~@debug (on top: perf_event_open)" "SystemCallFilter=~@debug"
try "SystemCallFilter=~@resources (on top)" "SystemCallFilter=~@resources"
try "no CAP_SYS_PTRACE" "CapabilityBoundingSet=~CAP_SYS_PTRACE"
try "no CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH" "CapabilityBoundingSet=~CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH"
try "no CAP_NET_ADMIN" "CapabilityBoundingSet=~CAP_NET_ADMIN"
try "no CAP_SYS_RESOURCE" "CapabilityBoundingSet=~CAP_SYS_RESOURCE"
try "no CAP_PERFMON" "CapabilityBoundingSet=~CAP_PERFMON"
try "no CAP_BPF" "CapabilityBoundingSet=~CAP_BPF"
try "no CAP_MAC_ADMIN" "CapabilityBoundingSet=~CAP_MAC_ADMIN"
try "no CAP_SYS_ADMIN" "CapabilityBoundingSet=~CAP_SYS_ADMIN"
try "ProtectHome=yes" "ProtectHome=yes"
try "ProtectKernelTunables=no, ReadOnlyPaths=/sys (comparison)" "ProtectKernelTunables=no\nReadOnlyPaths=/sys"
rm -f "$DROPIN"
systemctl daemon-reload
exit 0
