"""What the plan puts in the kernel, rule kind by rule kind (the goldens show whole plans)."""

from __future__ import annotations

import ctypes

import pytest

from karmor_host.enforce.bpflsm import abi
from karmor_host.enforce.bpflsm.plan import Protection, Ref, cfg_value, encode, plan
from karmor_host.policy.ruleset import Category, Posture
from tests.unit.enforce.bpflsm.helpers import DEV, HEAD, PROTECT, ino, resolve, ruleset_of

NONE = Protection()


def one(body: str, name: str = "p", postures=None, protect=NONE):
    rs = ruleset_of(HEAD.format(name=name) + body, postures)
    return rs, plan(rs, resolve, protect)


def test_file_path_is_keyed_by_its_directory_and_name():
    rs, p = one("  file:\n    matchPaths:\n    - path: /etc/passwd\n  action: Block\n")
    (rule,) = rs.rules
    assert p.files == {(abi.Op.FILE, 0, DEV, ino("/etc/"), "passwd"): [Ref(rule.id, abi.Action.BLOCK, 0)]}
    assert p.op_flags[abi.Op.FILE] == abi.F_GLOBAL | abi.F_FILES
    assert p.kernel_rules == {rule.id}


def test_directory_rule_is_keyed_by_the_directory_with_its_depth():
    _, p = one("  file:\n    matchDirectories:\n    - dir: /etc/ssl/\n      recursive: true\n"
               "    - dir: /var/spool/\n  action: Block\n")
    flags = {k[3]: [r.flags for r in v] for k, v in p.dirs.items()}
    assert flags == {ino("/etc/ssl/"): [abi.RECURSIVE], ino("/var/spool/"): [0]}
    assert p.op_flags[abi.Op.FILE] == abi.F_GLOBAL | abi.F_DIRS


def test_read_only_and_owner_only_travel_as_flags():
    _, p = one("  file:\n    matchPaths:\n    - path: /etc/hosts\n      readOnly: true\n"
               "    - path: /etc/motd\n      ownerOnly: true\n  action: Block\n")
    flags = {k[4]: v[0].flags for k, v in p.files.items()}
    assert flags == {"hosts": abi.READ_ONLY, "motd": abi.OWNER_ONLY}


def test_execname_is_a_name_only_key():
    _, p = one("  process:\n    matchPaths:\n    - execname: nc\n  action: Block\n")
    assert list(p.files) == [(abi.Op.PROCESS, 0, 0, 0, "nc")]
    assert p.op_flags[abi.Op.PROCESS] == abi.F_GLOBAL | abi.F_NAMES


def test_from_source_rules_live_in_their_scope_and_sources_are_keyed():
    rs, p = one("  file:\n    matchPaths:\n    - path: /etc/hosts\n      fromSource:\n"
                "      - path: /usr/bin/cat\n      - path: /usr/bin/head\n  action: Audit\n")
    assert sorted(k[1] for k in p.files) == [1, 2]
    assert p.srcs == {(DEV, ino("/usr/bin/"), "cat"): (1, 0), (DEV, ino("/usr/bin/"), "head"): (2, 0)}
    assert p.op_flags[abi.Op.FILE] == abi.F_SCOPED | abi.F_FILES
    assert p.flags == abi.C_SOURCES


def test_protocols_and_capabilities_are_codes():
    _, p = one("  network:\n    matchProtocols:\n    - protocol: udp,icmp\n      fromSource:\n"
               "      - path: /usr/bin/busybox\n  capabilities:\n    matchCapabilities:\n"
               "    - capability: net_raw\n      fromSource:\n      - path: /usr/bin/busybox\n  action: Block\n")
    assert sorted((k[0], k[2]) for k in p.codes) == [
        (abi.Op.NETWORK, abi.Proto.UDP), (abi.Op.NETWORK, abi.Proto.ICMP), (abi.Op.CAPABILITIES, 13)]


def test_patterns_and_syscalls_stay_with_the_monitor_and_say_so():
    rs, p = one("  file:\n    matchPatterns:\n    - pattern: /tmp/*.key\n  syscalls:\n    matchSyscalls:\n"
                "    - syscall: [unlink]\n  action: Block\n")
    modes = {s.mode: s.reason for s in p.statuses}
    assert "audit only on BPF-LSM" in modes["audit-only"] and "Audit (Block)" in modes["audit-only"]
    assert "eBPF monitor" in modes["monitor"]
    assert p.kernel_rules == frozenset() and p.entries() == 0


def test_missing_directory_is_pending_and_listed():
    _, p = one("  file:\n    matchPaths:\n    - path: /missing/x/y\n  action: Block\n")
    (status,) = p.statuses
    assert status.mode == "pending" and "/missing/x/" in status.reason
    assert p.pending == ("/missing/x/",)


def test_whitelist_with_sources_confines_only_them():
    rs, p = one("  file:\n    matchPaths:\n    - path: /srv/a\n      fromSource:\n      - path: /usr/bin/busybox\n"
                "  action: Allow\n", postures={Category.FILE: Posture.BLOCK})
    for op in (abi.Op.PROCESS, abi.Op.FILE):
        assert p.op_flags[op] & (abi.F_CONFINE_SCOPED | abi.F_POSTURE_BLOCK) == abi.F_CONFINE_SCOPED | abi.F_POSTURE_BLOCK
        assert not p.op_flags[op] & abi.F_CONFINE_ALL
    assert p.srcs[(DEV, ino("/usr/bin/"), "busybox")] == (1, abi.CAT_FILE)
    assert p.kernel_postures == {Category.FILE}


def test_whitelist_without_sources_confines_everyone_with_the_audit_posture():
    _, p = one("  process:\n    matchDirectories:\n    - dir: /usr/bin/\n      recursive: true\n  action: Allow\n")
    assert p.op_flags[abi.Op.PROCESS] & abi.F_CONFINE_ALL
    assert not p.op_flags[abi.Op.PROCESS] & abi.F_POSTURE_BLOCK


def test_whitelist_the_kernel_cannot_hold_is_left_whole_to_the_monitor():
    rs, p = one("  file:\n    matchPaths:\n    - path: /srv/a\n    matchPatterns:\n    - pattern: /srv/*.log\n"
                "  action: Allow\n", postures={Category.FILE: Posture.BLOCK})
    assert p.kernel_postures == frozenset() and p.kernel_rules == frozenset()
    assert not any(f & (abi.F_CONFINE_ALL | abi.F_CONFINE_SCOPED) for f in p.op_flags)
    assert any("applied by the eBPF monitor" in n for n in p.notes)


def test_agent_files_get_protect_markers_only_when_something_can_deny():
    _, audit_only = one("  file:\n    matchPaths:\n    - path: /etc/passwd\n  action: Audit\n", protect=PROTECT)
    assert not any(r.action == abi.Action.PROTECT for v in audit_only.files.values() for r in v)
    _, blocking = one("  file:\n    matchDirectories:\n    - dir: /etc/\n      recursive: true\n  action: Block\n",
                      protect=PROTECT)
    markers = {k for k, v in blocking.files.items() if v[0].action == abi.Action.PROTECT}
    assert (abi.Op.FILE, 0, DEV, ino("/etc/karmor/"), "karmor-host.yaml") in markers
    assert (abi.Op.FILE, 0, DEV, ino("/etc/karmor/policies/"), 0) not in markers
    assert blocking.dirs[(abi.Op.FILE, 0, DEV, ino("/etc/karmor/policies/"))][0] == Ref(0, abi.Action.PROTECT, abi.RECURSIVE)
    (status,) = blocking.statuses
    assert "never denies the agent's own files" in status.reason and "/etc/karmor/policies/" in status.reason


def test_a_full_key_sends_the_extra_rule_to_the_monitor():
    # rules that differ only in their flags share a key: 8 flag combinations on one directory,
    # and one slot of each key stays free for a PROTECT marker, so the eighth goes to the monitor
    rules = "".join(f"    - dir: /etc/ssl/\n      recursive: {str(r).lower()}\n      readOnly: {str(ro).lower()}\n"
                    f"      ownerOnly: {str(oo).lower()}\n"
                    for r in (False, True) for ro in (False, True) for oo in (False, True))
    rs, p = one("  file:\n    matchDirectories:\n" + rules + "  action: Block\n")
    modes = [s.mode for s in p.statuses]
    assert len(rs.rules) == 8
    assert modes.count("enforced") == abi.REFS - 1 and modes.count("audit-only") == 1
    assert "more than" in [s for s in p.statuses if s.mode == "audit-only"][0].reason


def test_encode_sizes_and_banks():
    _, p = one("  file:\n    matchPaths:\n    - path: /etc/hosts\n      fromSource:\n      - path: /usr/bin/cat\n"
               "  action: Block\n")
    for bank in (0, 1):
        maps = encode(p, bank)
        (k, v), = maps["lsm_files"]
        assert len(k) == ctypes.sizeof(abi.FileKey) and len(v) == ctypes.sizeof(abi.Refs)
        key = abi.FileKey.from_buffer_copy(k)
        assert (key.bank, key.op, key.scope, key.name, key.name_len) == (bank, abi.Op.FILE, 1, b"hosts", 5)
        (sk, sv), = maps["lsm_srcs"]
        assert abi.FileKey.from_buffer_copy(sk).name == b"cat" and abi.Scope.from_buffer_copy(sv).scope == 1
    cfg = abi.Cfg.from_buffer_copy(cfg_value(p, 7))
    assert cfg.generation == 7 and cfg.flags == abi.C_SOURCES


@pytest.mark.parametrize("name,length", [("x" * 63, 63), ("y" * 200, 200)])
def test_long_names_keep_a_prefix_and_their_length(name, length):
    from karmor_host.enforce.bpflsm.plan import file_key

    key = abi.FileKey.from_buffer_copy(file_key(0, 1, 0, 1, 2, name))
    assert key.name == name.encode()[:63] and key.name_len == length
