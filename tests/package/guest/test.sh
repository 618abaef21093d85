#!/bin/bash
# The package test, inside a fresh Debian 12 guest with systemd as PID 1: what a user does with
# the .deb, checked at each step. tests/package/vm.py boots the guest; tests/package/test_guest.py
# turns every `record`/`check` line into a test result. Runs as root; cwd = the payload disk:
#   karmor-host_<v>_amd64.deb          the build under test
#   upgrade/karmor-host_<v'>_amd64.deb  the same build with a higher version (the upgrade)
#   policies/*.yaml, sandbox-check.sh   test material
# PKGTEST_BOOT = 1, 2; exit 100 = "reboot, then run me again" (a fresh QEMU on the same disks).
#
# Enforcement: the checks read the enforcer the running agent reports (`karmor-host status`).
# With an LSM enforcer (bpflsm, apparmor, selinux) a Block rule must make the read fail with
# EACCES, alert with Action Block, and stay enforced through restarts and upgrades. With the
# alerts-only enforcer `none` the read succeeds and the alert says "Audit (Block)". Both
# branches are real assertions; which one runs follows from the agent, not from this script.
set -u
. ./lib.sh
export DEBIAN_FRONTEND=noninteractive
DEB=$(ls ./karmor-host_*_amd64.deb | head -n 1)
UPGRADE=$(ls ./upgrade/karmor-host_*_amd64.deb | head -n 1)
AUDIT=pkgtest-audit-read
BLOCK=pkgtest-block-read
AUDITED=/etc/pkgtest/audited.txt
BLOCKED=/etc/pkgtest/blocked.txt
CONF=/etc/karmor/karmor-host.yaml
# Seconds an alert or an apply may take under TCG (5-10x slower than a real machine; the
# measured values are reported as metrics, and the host test compares them with 1 s)
SLOW=20

# ---------------------------------------------------------------------------------------------
# read_blocked: one read of the Block rule's file by cat; prints "denied" or "allowed"
read_blocked() { if cat "$BLOCKED" > /dev/null 2>&1; then echo allowed; else echo denied; fi; }
is_denied() { ! cat "$BLOCKED" > /dev/null 2>&1; }

# expect_block NAME [ENFORCER_FIELD]: trigger the Block rule once and check the outcome for the
# current enforcer; with ENFORCER_FIELD, the alert's Enforcer must be that (who denied it)
expect_block() {
    local name=$1 want_by=${2:-} enforcer cur out rc want_action detail line action by
    enforcer=$(enforcer_name)
    cur=$(journal_mark)
    out=$(cat "$BLOCKED" 2>&1)
    rc=$?
    if is_lsm_enforcer "$enforcer"; then
        want_action=Block
        if [ $rc = 0 ]; then
            record "$name" 0 "enforcer=$enforcer: the read of $BLOCKED succeeded, should be denied"
            return
        fi
        case "$out" in *"Permission denied"*) ;; *)
            record "$name" 0 "enforcer=$enforcer: the read failed, but not with EACCES: $out"; return ;;
        esac
    else
        want_action="Audit (Block)"
        if [ $rc != 0 ]; then
            record "$name" 0 "enforcer=$enforcer (alerts only): the read failed: $out"
            return
        fi
    fi
    if ! wait_for $SLOW has_alert "$cur" KARMOR_POLICY_NAME=$BLOCK > /dev/null; then
        record "$name" 0 "enforcer=$enforcer: no alert of $BLOCK in the journal within $SLOW s"
        return
    fi
    line=$(alerts_since "$cur" KARMOR_POLICY_NAME=$BLOCK | tail -n 1)
    action=$(field "$line" KARMOR_ACTION)
    by=$(field "$line" KARMOR_ENFORCER)
    if [ "$action" != "$want_action" ]; then
        record "$name" 0 "enforcer=$enforcer: alert Action '$action', want '$want_action'"
    elif [ -n "$want_by" ] && [ "$by" != "$want_by" ]; then
        record "$name" 0 "enforcer=$enforcer: alert Enforcer '$by', want '$want_by'"
    else
        record "$name" 1 "enforcer=$enforcer: read $( [ $rc = 0 ] && echo allowed || echo denied), alert Action '$action', Enforcer '$by'"
    fi
}

# continuity NAME CMD...: run CMD (a restart, an upgrade) while reading the blocked file every
# 100 ms. With an LSM enforcer no read may get through. With `none` nothing blocks: the check
# is that alerts resume afterwards; the reads the agent did not see are reported as a metric.
continuity() {
    local name=$1 enforcer cur rc reads allowed seen t0 secs
    shift
    enforcer=$(enforcer_name)
    cur=$(journal_mark)
    rm -f /run/pkgtest-stop
    (while [ ! -e /run/pkgtest-stop ]; do read_blocked; sleep 0.1; done) > /run/pkgtest-reads &
    local loop=$!
    sleep 0.5
    t0=$(now_ms)
    "$@" > /run/pkgtest-continuity.log 2>&1
    rc=$?
    secs=$(since "$t0")
    sleep 0.5
    touch /run/pkgtest-stop
    wait $loop
    reads=$(wc -l < /run/pkgtest-reads)
    allowed=$(grep -c allowed /run/pkgtest-reads)
    metric "${name}_seconds" "$secs" s
    if [ $rc != 0 ]; then
        record "$name" 0 "'$*' failed ($rc): $(tail -n 20 /run/pkgtest-continuity.log)"
        return
    fi
    if ! wait_for 60 systemctl is-active --quiet "$UNIT" > /dev/null; then
        record "$name" 0 "the service is not active after '$*': $(systemctl status "$UNIT" --no-pager 2>&1 | tail -n 20)"
        return
    fi
    if is_lsm_enforcer "$enforcer"; then
        if [ "$allowed" = 0 ]; then
            record "$name" 1 "enforcer=$enforcer: all $reads reads during '$*' ($secs s) were denied"
        else
            record "$name" 0 "enforcer=$enforcer: $allowed of $reads reads got through during '$*'"
        fi
        return
    fi
    # alerts only: every read was allowed; how many did the agent report?
    sleep 1
    seen=$(alerts_since "$cur" KARMOR_POLICY_NAME=$BLOCK | wc -l)
    metric "${name}_reads_unreported" $((reads - seen)) reads
    cur=$(journal_mark)
    cat "$BLOCKED" > /dev/null 2>&1
    if wait_for $SLOW has_alert "$cur" KARMOR_POLICY_NAME=$BLOCK > /dev/null; then
        record "$name" 1 "enforcer=$enforcer (alerts only, nothing to keep enforced): $reads reads during '$*' ($secs s), $seen reported; alerts resume afterwards"
    else
        record "$name" 0 "enforcer=$enforcer: no alert after '$*'"
    fi
}

# ---------------------------------------------------------------------------------------------
boot1() {
    check guest_lsms grep -q 'apparmor,bpf' /sys/kernel/security/lsm
    check guest_apparmor aa-enabled

    # --- install, as the README says --------------------------------------------------------
    local t0 out rc
    t0=$(now_ms)
    out=$(apt install -y "$DEB" 2>&1)
    rc=$?
    metric install_seconds "$(since "$t0")" s
    echo "$out" | tail -n 15
    if [ $rc != 0 ]; then
        record install 0 "apt install $DEB failed ($rc): $(echo "$out" | tail -n 30)"
        return 1
    fi
    record install 1 "$(dpkg-query -W -f='${Package} ${Version} ${db:Status-Status}' karmor-host)"

    check installed_files bash -c '
        set -e
        test -x /usr/bin/karmor-host
        test -f /usr/lib/karmor-host/bpf/monitor.bpf.o
        test -f /usr/lib/karmor-host/bpf/lsm_probe.bpf.o
        test -x /usr/lib/karmor-host/remove-kernel-state
        test -f /lib/systemd/system/karmor-host.service
        test -x /lib/systemd/system-generators/karmor-host-generator
        test -f /usr/share/doc/karmor-host/examples/audit-shadow-reads.yaml
        zcat /usr/share/man/man8/karmor-host.8.gz | grep -q "^\.TH KARMOR\\\\-HOST 8"
        dpkg-query -W -f="\${Conffiles}\n" karmor-host | grep -q " /etc/karmor/karmor-host.yaml "
        echo "policy dir: $(stat -c "%U:%G %a" /etc/karmor/policies), entries: $(ls -A /etc/karmor/policies | tr "\n" " ")"
        test "$(stat -c "%U:%G %a" /etc/karmor/policies)" = "root:root 750"
        test "$(ls -A /etc/karmor/policies)" = README'

    # --- the service: enabled, started, READY=1 received ------------------------------------
    if wait_for 90 systemctl is-active --quiet "$UNIT" > /dev/null; then
        local start ready
        start=$(unit_prop ExecMainStartTimestampMonotonic)
        ready=$(unit_prop ActiveEnterTimestampMonotonic)
        metric start_to_ready_seconds "$(awk -v a="$start" -v b="$ready" 'BEGIN {printf "%.2f", (b - a) / 1e6}')" s
        record service_active 1 "$(systemctl status "$UNIT" --no-pager 2>&1 | head -n 12)"
    else
        record service_active 0 "$(systemctl status "$UNIT" --no-pager 2>&1; journalctl -u "$UNIT" --no-pager | tail -n 40)"
        return 1
    fi
    check service_properties bash -c '
        for kv in Type=notify UnitFileState=enabled ActiveState=active SubState=running \
                  NRestarts=0 WatchdogUSec=30s Restart=on-failure NotifyAccess=main; do
            v=$(systemctl show -p "${kv%%=*}" --value karmor-host.service)
            echo "${kv%%=*}=$v"
            [ "$v" = "${kv#*=}" ] || { echo "want $kv"; exit 1; }
        done
        st=$(systemctl show -p StatusText --value karmor-host.service)
        echo "StatusText=$st"
        case "$st" in enforcer=*) ;; *) exit 1 ;; esac
        # no SELinux here: the generator adds nothing, the unit runs as shipped
        d=$(systemctl show -p DropInPaths --value karmor-host.service)
        echo "DropInPaths=$d"
        [ -z "$d" ]'
    check start_errors bash -c 'e=$(journalctl -b -u karmor-host.service -p err --no-pager -o cat); echo "${e:-no errors}"; [ -z "$e" ]'
    check journal_ready bash -c 'journalctl -u karmor-host.service -o json --no-pager KARMOR_LOG_EVENT=ready | grep -q KARMOR_LOG_EVENT'
    check status_command bash -c 'karmor-host status && karmor-host status --json | python3 -c "
import json, sys
d = json.load(sys.stdin)
assert d[\"state\"] == \"running\", d[\"state\"]
print(\"enforcer:\", d[\"enforcer\"][\"name\"], \"-\", d[\"enforcer\"][\"reason\"])"'
    check probe_bpflsm bash -c 'karmor-host probe && karmor-host probe --json | python3 -c "
import json, sys
d = json.load(sys.stdin)
assert d[\"bpflsm\"][\"usable\"], d[\"bpflsm\"]
assert d[\"apparmor\"][\"usable\"], d[\"apparmor\"]"'
    check unit_verify bash -c 'out=$(systemd-analyze verify --man=no karmor-host.service 2>&1); rc=$?; echo "$out"; [ $rc = 0 ] && [ -z "$out" ]'
    systemd-analyze security karmor-host.service --no-pager > "$PKGTEST_OUT/security.txt" 2>&1
    metric security_exposure "$(sed -n 's/.*Overall exposure level for karmor-host.service: \([0-9.]*\).*/\1/p' "$PKGTEST_OUT/security.txt")" score
    cp /lib/systemd/system/karmor-host.service "$PKGTEST_OUT/"

    # --- the sandbox leaves the agent what it needs ----------------------------------------
    mkdir -p /home/pkgtest && echo readme > /home/pkgtest/readme
    touch /tmp/pkgtest-host-tmp
    sed -e 's|^ExecStart=.*|ExecStart=/payload/sandbox-check.sh|' -e 's|^Type=notify|Type=oneshot|' \
        -e '/^ExecReload=/d' -e '/^WatchdogSec=/d' -e '/^Restart=/d' -e '/^NotifyAccess=/d' \
        -e 's|^RuntimeDirectory=karmor$|RuntimeDirectory=karmor-sandbox-check|' \
        -e 's|^StateDirectory=karmor$|StateDirectory=karmor-sandbox-check|' \
        -e '/^\[Install\]/,$d' -e 's|^Before=.*||' -e 's|^Conflicts=.*||' \
        /lib/systemd/system/karmor-host.service > /run/systemd/system/karmor-sandbox-check.service
    # the check script must be readable inside the sandbox (it is, /payload is a mount)
    systemctl daemon-reload
    systemctl start karmor-sandbox-check.service
    local src=$?
    local sout
    sout=$(journalctl -u karmor-sandbox-check.service -o cat --no-pager | grep -E '^(ok|FAIL|[0-9]+ failed)')
    echo "$sout" > "$PKGTEST_OUT/sandbox-check.txt"
    if [ $src = 0 ]; then record sandbox 1 "$sout"; else record sandbox 0 "$sout"; fi
    rm -f /run/systemd/system/karmor-sandbox-check.service
    systemctl daemon-reload

    # --- a policy dropped into /etc/karmor/policies -----------------------------------------
    mkdir -p /etc/pkgtest
    echo "audited" > "$AUDITED"
    echo "blocked" > "$BLOCKED"
    local cur applied alert line enforcer blocked
    enforcer=$(enforcer_name)
    cur=$(journal_mark)
    t0=$(now_ms)
    install -m 0644 policies/pkgtest-audit.yaml policies/pkgtest-block.yaml /etc/karmor/policies/
    if is_lsm_enforcer "$enforcer"; then
        # from the copy to the first denied read, polled every 50 ms
        if blocked=$(wait_for $SLOW is_denied); then
            metric block_after_copy_seconds "$blocked" s
            record block_after_copy 1 "enforcer=$enforcer: $BLOCKED denied ${blocked} s after the policy file was copied"
        else
            record block_after_copy 0 "enforcer=$enforcer: $BLOCKED still readable $SLOW s after the copy"
        fi
    else
        record block_after_copy 1 "enforcer=$enforcer: alerts only, nothing is blocked (block_rule checks the Audit (Block) alert)"
    fi
    if wait_for $SLOW policy_listed $AUDIT > /dev/null && wait_for 5 policy_listed $BLOCK > /dev/null; then
        applied=$(since "$t0")
        metric policy_apply_seconds "$applied" s
        record policy_applied 1 "both test policies active ${applied} s after the copy"
    else
        record policy_applied 0 "not active after $SLOW s: $(karmor-host status 2>&1)"
    fi
    t0=$(now_ms)
    cat "$AUDITED" > /dev/null
    if alert=$(wait_for $SLOW has_alert "$cur" KARMOR_POLICY_NAME=$AUDIT); then
        metric audit_alert_seconds "$alert" s
        line=$(alerts_since "$cur" KARMOR_POLICY_NAME=$AUDIT | tail -n 1)
        echo "$line" > "$PKGTEST_OUT/alert-audit.json"
        local want got bad=""
        for want in KARMOR_TYPE=MatchedHostPolicy KARMOR_ACTION=Audit KARMOR_OPERATION=File \
                    "KARMOR_RESOURCE=$AUDITED" KARMOR_PROCESS_NAME=/usr/bin/cat KARMOR_SEVERITY=5 \
                    KARMOR_RESULT=Passed KARMOR_CLUSTER_NAME=default KARMOR_HOST_NAME=pkgvm \
                    _SYSTEMD_UNIT=karmor-host.service SYSLOG_IDENTIFIER=karmor-host; do
            got=$(field "$line" "${want%%=*}")
            [ "$got" = "${want#*=}" ] || bad="$bad ${want%%=*}='$got' (want '${want#*=}')"
        done
        if [ -z "$bad" ]; then
            record audit_alert 1 "alert in journalctl -u karmor-host ${alert} s after the read, fields as expected"
        else
            record audit_alert 0 "fields:$bad"
        fi
    else
        record audit_alert 0 "no alert of $AUDIT within $SLOW s: $(journalctl -u "$UNIT" --no-pager | tail -n 30)"
    fi
    check logs_command bash -c "karmor-host logs --policy $AUDIT --json | grep -q '\"PolicyName\": *\"$AUDIT\"'"
    expect_block block_rule

    # --- reload: the edited conffile is read (and must survive the upgrade on boot 2) -------
    sed -i 's/^  cluster: default /  cluster: pkgtest-edited /' "$CONF"
    local pid0 pid1
    pid0=$(unit_prop MainPID)
    cur=$(journal_mark)
    systemctl reload "$UNIT"
    rc=$?
    pid1=$(unit_prop MainPID)
    wait_for $SLOW has_alert "$cur" KARMOR_LOG_EVENT=applied KARMOR_LOG_WHY=reload > /dev/null
    cat "$AUDITED" > /dev/null
    if [ $rc = 0 ] && [ "$pid0" = "$pid1" ] && wait_for $SLOW has_alert "$cur" KARMOR_POLICY_NAME=$AUDIT KARMOR_CLUSTER_NAME=pkgtest-edited > /dev/null; then
        record reload 1 "systemctl reload: same pid $pid1, the edited identity.cluster is in new alerts"
    else
        record reload 0 "rc=$rc pid $pid0 -> $pid1; $(journalctl -u "$UNIT" --no-pager | tail -n 20)"
    fi

    # --- restart --------------------------------------------------------------------------
    pid0=$(unit_prop MainPID)
    continuity restart systemctl restart "$UNIT"
    pid1=$(unit_prop MainPID)
    [ "$pid0" != "$pid1" ] || record restart 0 "MainPID did not change ($pid0)"

    # --- the AppArmor enforcer under the same unit ------------------------------------------
    # (auto picks BPF-LSM here; AppArmor is what a Debian host without lsm=...,bpf gets.)
    # Switching: stop, take the old enforcer's kernel state out, configure, start.
    set_enforcer apparmor
    if [ "$(enforcer_name)" = apparmor ]; then
        expect_block apparmor_enforcer AppArmor
    else
        record apparmor_enforcer 0 "enforcer is '$(enforcer_name)', not apparmor: $(journalctl -u "$UNIT" -p warning --no-pager -o cat | tail -n 10)"
    fi
    set_enforcer auto

    cp "$CONF" "$PKGTEST_OUT/conffile-boot1.yaml"
    return 100
}

# set_enforcer NAME: the conffile's enforcer, applied with a clean switch
set_enforcer() {
    systemctl stop "$UNIT"
    karmor-host run --cleanup > /dev/null 2>&1
    sed -i "s/^enforcer: .*/enforcer: $1/" "$CONF"
    systemctl start "$UNIT"
    wait_for 60 policy_listed $BLOCK > /dev/null
}

# ---------------------------------------------------------------------------------------------
boot2() {
    # --- the service came up by itself, before the ordinary services ------------------------
    if wait_for 90 systemctl is-active --quiet "$UNIT" > /dev/null; then
        record boot_active 1 "$(systemctl is-enabled "$UNIT"), $(systemctl is-active "$UNIT")"
    else
        record boot_active 0 "$(systemctl status "$UNIT" --no-pager 2>&1; journalctl -b -u "$UNIT" --no-pager | tail -n 40)"
        return 1
    fi
    local ready basic
    ready=$(unit_prop ActiveEnterTimestampMonotonic)
    basic=$(systemctl show -p ActiveEnterTimestampMonotonic --value basic.target)
    metric boot_ready_seconds "$(awk -v a="$ready" 'BEGIN {printf "%.2f", a / 1e6}')" s
    systemd-analyze critical-chain "$UNIT" --no-pager > "$PKGTEST_OUT/critical-chain.txt" 2>&1
    if [ "$ready" -gt 0 ] && [ "$ready" -le "$basic" ]; then
        record boot_order 1 "karmor-host ready at $ready us, basic.target at $basic us (monotonic)"
    else
        record boot_order 0 "karmor-host ready at $ready us, basic.target at $basic us"
    fi
    check boot_policies bash -c "grep -q '\"name\": \"$AUDIT\"' /run/karmor/status.json && grep -q '\"name\": \"$BLOCK\"' /run/karmor/status.json"
    expect_block boot_enforces

    # --- upgrade to a newer build: conffile kept, service restarted -------------------------
    local pid0 pid1 newver
    newver=$(dpkg-deb -f "$UPGRADE" Version)
    pid0=$(unit_prop MainPID)
    continuity upgrade apt install -y "$UPGRADE"
    pid1=$(unit_prop MainPID)
    check upgrade_version test "$(dpkg-query -W -f='${Version}' karmor-host)" = "$newver"
    check upgrade_restarted test "$pid0" != "$pid1"
    check upgrade_conffile bash -c "grep -q '^  cluster: pkgtest-edited ' $CONF && ! ls /etc/karmor/*.dpkg-* 2>/dev/null"
    cp "$CONF" "$PKGTEST_OUT/conffile-upgraded.yaml"

    # --- purge: nothing of ours left --------------------------------------------------------
    # besides what the running enforcer pinned or loaded, leave what the other LSM enforcers
    # leave on purpose (pins, a loaded profile whose file is in the state directory), so that
    # removal is tested for real whatever the enforcer here
    mkdir -p /sys/fs/bpf/karmor/pkgtest /var/lib/karmor/apparmor
    cat > /var/lib/karmor/apparmor/pkgtest <<'AA'
abi <abi/3.0>,
profile karmor-pkgtest flags=(complain) {
  /usr/bin/true rix,
}
AA
    apparmor_parser -r -K /var/lib/karmor/apparmor/pkgtest
    check purge_seeded grep -q '^karmor-pkgtest ' /sys/kernel/security/apparmor/profiles
    local out rc
    out=$(apt purge -y karmor-host 2>&1)
    rc=$?
    echo "$out" | tail -n 15
    if [ $rc != 0 ]; then
        record purge 0 "apt purge failed ($rc): $(echo "$out" | tail -n 20)"
        return 1
    fi
    record purge 1 "$(echo "$out" | grep -E 'Purging|Removing|karmor-host:' | head -n 10)"
    check purge_leftovers bash -c '
        left=""
        for p in /etc/karmor /var/lib/karmor /run/karmor /usr/lib/karmor-host /usr/bin/karmor-host \
                 /lib/systemd/system/karmor-host.service /sys/fs/bpf/karmor \
                 /usr/lib/python3/dist-packages/karmor_host /lib/systemd/system-generators/karmor-host-generator; do
            [ -e "$p" ] && left="$left $p"
        done
        for p in /etc/systemd/system/*.wants/karmor-host.service /var/lib/systemd/deb-systemd-helper-enabled/*karmor-host* \
                 /run/systemd/generator/karmor-host.service.d; do
            [ -e "$p" ] || [ -L "$p" ] && left="$left $p"
        done
        grep "^karmor" /sys/kernel/security/apparmor/profiles && left="$left (loaded AppArmor profiles)"
        pgrep -x karmor-host && left="$left (a karmor-host process)"
        st=$(dpkg-query -W -f="\${db:Status-Abbrev}" karmor-host 2>/dev/null)
        case "$st" in ""|un*|pn*) ;; *) left="$left (dpkg status $st)" ;; esac
        systemctl list-unit-files karmor-host.service --no-legend | grep -q karmor && left="$left (unit file known to systemd)"
        echo "left behind:${left:- nothing}"
        [ -z "$left" ]'
    return 0
}

case "${PKGTEST_BOOT:-1}" in
    1) boot1; rc=$? ;;
    2) boot2; rc=$? ;;
    *) echo "unexpected boot ${PKGTEST_BOOT}"; rc=1 ;;
esac
journalctl -u "$UNIT" -b --no-pager -o short-monotonic > "$PKGTEST_OUT/karmor-host-boot${PKGTEST_BOOT}.txt" 2>&1
if [ $rc = 100 ]; then exit 100; fi
# the host decides pass/fail from checks.jsonl; the exit code says whether the script got through
exit $rc
