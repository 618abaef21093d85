# Helpers for test.sh (sourced; runs in the guest as root).
# Every check appends one JSON line to $PKGTEST_OUT/checks.jsonl:
#   {"boot": N, "name": "...", "ok": true|false, "detail": "..."}
# and every measurement one line to $PKGTEST_OUT/metrics.jsonl; the host-side tests
# (tests/package/test_guest.py) turn each check into a test result.

UNIT=karmor-host.service

now_ms() { date +%s%3N; }
# seconds since a now_ms value, as 1.234
since() { local d=$(($(now_ms) - $1)); printf '%d.%03d\n' $((d / 1000)) $((d % 1000)); }

# JSON string from any text, in shell (a python3 per record costs ~0.5 s under TCG)
_json_str() {
    printf '%s' "$1" | tail -c 3000 | tr -d '\000-\010\013-\037' |
        sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' | awk 'NR > 1 {printf "\\n"} {printf "%s", $0}'
}

_json_line() {  # check|metric NAME OK|VALUE DETAIL|UNIT
    local line
    if [ "$1" = check ]; then
        line="{\"boot\": ${PKGTEST_BOOT:-0}, \"name\": \"$2\", \"ok\": $([ "$3" = 1 ] && echo true || echo false), \"detail\": \"$(_json_str "$4")\", \"at\": $SECONDS}"
    else
        line="{\"boot\": ${PKGTEST_BOOT:-0}, \"name\": \"$2\", \"value\": \"$3\", \"unit\": \"$4\"}"
    fi
    echo "$line" >> "$PKGTEST_OUT/$1s.jsonl"
}

# record NAME OK(0|1) DETAIL
record() {
    _json_line check "$1" "$2" "$3"
    if [ "$2" = 1 ]; then echo "PASS $1 [${SECONDS}s]"; else echo "FAIL $1 [${SECONDS}s]: $3"; fi
}

# metric NAME VALUE UNIT
metric() { _json_line metric "$1" "$2" "$3"; echo "METRIC $1 = $2 $3"; }

# check NAME CMD...: passes when CMD exits 0; its output is the detail
check() {
    local name=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    if [ $rc = 0 ]; then record "$name" 1 "$out"; else record "$name" 0 "exit $rc: $out"; fi
    return $rc
}

# wait_for TIMEOUT_S CMD...: poll CMD every 50 ms until it succeeds (prints the seconds it
# took) or TIMEOUT_S passes (prints the seconds waited, returns 1)
wait_for() {
    local limit=$(($1 * 1000)) t0
    shift
    t0=$(now_ms)
    while :; do
        if "$@" > /dev/null 2>&1; then
            since "$t0"
            return 0
        fi
        if [ $(($(now_ms) - t0)) -ge $limit ]; then
            since "$t0"
            return 1
        fi
        sleep 0.05
    done
}

unit_prop() { systemctl show -p "$1" --value "$UNIT"; }

# journal_mark: a point in time to look for journal entries after, as @<seconds.micro>.
# (Not a cursor: `journalctl --after-cursor=C MATCH` skips the first matching entry when the
# entry at C does not match, a behaviour of systemd 252 that hid alerts here.)
journal_mark() { date +@%s.%6N; }

# alerts_since MARK MATCH...: the unit's journal entries since MARK matching the fields, as JSON lines
alerts_since() {
    local mark=$1
    shift
    journalctl -u "$UNIT" --since="$mark" -o json --no-pager "$@" 2> /dev/null
}

has_alert() {  # MARK MATCH...
    [ -n "$(alerts_since "$@")" ]
}

# field JSON_LINE NAME: one field of a journal JSON record
field() { python3 -c "import json, sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ''))" "$1" "$2"; }

agent_status_json() { karmor-host status --json 2> /dev/null; }

# the running agent's enforcer, from its status file (the CLI would cost seconds under TCG)
enforcer_name() {
    python3 -c "import json; print(json.load(open('/run/karmor/status.json'))['enforcer']['name'])" 2> /dev/null
}

# policy_listed NAME: the running agent's status names the policy (grep, not python: this is
# polled to measure how fast a dropped-in file is applied)
policy_listed() { grep -q "\"name\": \"$1\"" /run/karmor/status.json 2> /dev/null; }

is_lsm_enforcer() { case "$1" in bpflsm | apparmor | selinux) return 0 ;; *) return 1 ;; esac; }
