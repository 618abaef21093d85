"""KubeArmor's host-policy scenarios under BPF-LSM, through the real agent in the guest: block
ls, curl, /etc/passwd reads, /etc/ recursively, /usr/bin/ as a directory, apt* as a pattern;
update then delete a policy; audit /etc/hosts read by cat, UDP, the unlink syscall. And what
users check next: a symlinked policy path, readOnly, ownerOnly, access restored by deleting a
policy.
Each shows the effect and the journald alert."""

from __future__ import annotations

import os
import time

import pytest

from tests.kernel.agent_harness import journal
from tests.vm.guest.bpflsm_support import (  # agent and scratch: module fixtures
    status,
    agent, scratch,
    BUSYBOX, Matrix, applied, denied, fields, name, no_alert, one_alert, remove_policy, run, sh,
    write_policy,
)

pytestmark = pytest.mark.vm_config("bpflsm")

BLOCKED = {"Action": "Block", "Enforcer": "BPFLSM", "Result": "Permission denied"}


@pytest.fixture(scope="module")
def matrix(vm_out):
    return Matrix(vm_out)


def test_block_ls_written_as_the_symlink_bin_ls(agent, matrix):
    policy = name("block-ls")
    with applied(agent, policy, "  severity: 5\n  process:\n    matchPaths:\n    - path: /bin/ls\n  action: Block\n"):
        t0 = time.time()
        for spelling in ("/usr/bin/ls", "/bin/ls"):
            p = run("bash", "-c", f"{spelling} /; exit $?")
            assert p.returncode == 126 and "Permission denied" in p.stderr, p.stderr
        rec = one_alert(policy, t0)
        assert fields(rec, "Action", "Enforcer", "Result") == BLOCKED
        assert rec["ProcessName"] == "/usr/bin/ls" and rec["ParentProcessName"] == "/usr/bin/bash"
        assert rec["Operation"] == "Process" and rec["Severity"] == "5"
        assert rec["Data"] == "syscall=SYS_EXECVE lsm=SECURITY_BPRM_CHECK"
        st = status(agent)
        (active,) = [p for p in st["policies"]["active"] if p["name"] == policy]
        assert [r["mode"] for r in active["rules"]] == ["enforced"] and active["rules"][0]["by"] == "BPFLSM"
    assert run("ls", "/").returncode == 0  # deleting the policy restores access
    matrix.scenario("block ls (policy says /bin/ls; run as /usr/bin/ls and /bin/ls); delete restores", "EACCES", rec)


def test_block_curl(agent, matrix):
    policy = name("block-curl")
    with applied(agent, policy, "  process:\n    matchPaths:\n    - path: /usr/bin/curl\n  action: Block\n"):
        t0 = time.time()
        with pytest.raises(PermissionError):
            run("/usr/bin/curl", "--version")
        rec = one_alert(policy, t0)
        assert fields(rec, "Action", "Enforcer", "Result") == BLOCKED and rec["ProcessName"] == "/usr/bin/curl"
    assert run("/usr/bin/curl", "--version").returncode == 0
    matrix.scenario("block curl", "EACCES", rec)


def test_block_etc_passwd_read(agent, matrix):
    policy = name("block-passwd")
    with applied(agent, policy, "  file:\n    matchPaths:\n    - path: /etc/passwd\n  action: Block\n"):
        t0 = time.time()
        p = run("cat", "/etc/passwd")
        assert denied(p), p.stderr
        rec = one_alert(policy, t0)
        assert fields(rec, "Action", "Enforcer", "Result") == BLOCKED
        assert rec["Resource"] == "/etc/passwd" and rec["ProcessName"] == "/usr/bin/cat"
        assert rec["Data"].startswith("syscall=SYS_OPENAT flags=O_RDONLY") and rec["Data"].endswith("lsm=SECURITY_FILE_OPEN")
    assert run("cat", "/etc/passwd").returncode == 0
    matrix.scenario("block reading /etc/passwd", "EACCES", rec)


def test_block_etc_recursive_from_source(agent, matrix):
    policy = name("block-etc")
    body = (f"  file:\n    matchDirectories:\n    - dir: /etc/\n      recursive: true\n      fromSource:\n"
            f"      - path: {BUSYBOX}\n  action: Block\n")
    with applied(agent, policy, body):
        t0 = time.time()
        assert denied(run(BUSYBOX, "cat", "/etc/hostname"))
        assert denied(run(BUSYBOX, "cat", "/etc/ssl/openssl.cnf"))  # any depth
        assert run("cat", "/etc/hostname").returncode == 0  # another program
        rec = one_alert(policy, t0, KARMOR_RESOURCE="/etc/ssl/openssl.cnf")
        assert fields(rec, "Action", "Enforcer", "Result") == BLOCKED and rec["Source"] == BUSYBOX
    matrix.scenario("block /etc/ recursively (fromSource busybox)", "EACCES at any depth; cat unaffected", rec)


def test_block_usr_bin_directory_from_source(agent, matrix):
    policy = name("block-usr-bin")
    body = f"  process:\n    matchDirectories:\n    - dir: /usr/bin/\n      fromSource:\n      - path: {BUSYBOX}\n  action: Block\n"
    with applied(agent, policy, body):
        t0 = time.time()
        p = sh("/usr/bin/date; exit $?")
        assert p.returncode == 126 and "Permission denied" in p.stderr, p.stderr
        assert sh("echo builtin").returncode == 0
        assert run("/usr/bin/date").returncode == 0  # started by python, not busybox
        rec = one_alert(policy, t0)
        assert fields(rec, "Action", "Enforcer", "Result") == BLOCKED
        assert rec["ProcessName"] == "/usr/bin/date" and rec["ParentProcessName"] == BUSYBOX
    matrix.scenario("block the /usr/bin/ directory (fromSource busybox)", "EACCES; date started by python runs", rec)


def test_apt_pattern_is_audit_only_and_says_so(agent, matrix):
    policy = name("block-apt")
    with applied(agent, policy, "  process:\n    matchPatterns:\n    - pattern: /usr/bin/apt*\n  action: Block\n"):
        (active,) = [p for p in status(agent)["policies"]["active"] if p["name"] == policy]
        (rule,) = active["rules"]
        assert rule["mode"] == "audit-only" and "audit only on BPF-LSM" in rule["reason"]
        t0 = time.time()
        assert run("apt-get", "--version").returncode == 0
        rec = one_alert(policy, t0)
        assert fields(rec, "Action", "Enforcer", "Result") == {
            "Action": "Audit (Block)", "Enforcer": "eBPF Monitor", "Result": "Passed"}
        assert rec["ProcessName"] == "/usr/bin/apt-get"
    matrix.scenario("block /usr/bin/apt* (matchPatterns)", "allowed: audit only on BPF-LSM, said in the apply report", rec)


def test_update_then_delete_a_policy(agent, matrix, scratch):
    secret = scratch.file("update.txt")
    policy = name("update-me")
    path = write_policy(agent, policy, f"  file:\n    matchPaths:\n    - path: {secret}\n  action: Block\n")
    try:
        t0 = time.time()
        assert denied(run("cat", secret))
        assert fields(one_alert(policy, t0), "Action", "Enforcer", "Result") == BLOCKED
        # update: the same policy, now Audit
        write_policy(agent, policy, f"  file:\n    matchPaths:\n    - path: {secret}\n  action: Audit\n")
        t1 = time.time()
        assert run("cat", secret).returncode == 0
        assert fields(one_alert(policy, t1), "Action", "Enforcer", "Result") == {
            "Action": "Audit", "Enforcer": "BPFLSM", "Result": "Passed"}
    finally:
        remove_policy(agent, path)
    t2 = time.time()
    assert run("cat", secret).returncode == 0
    no_alert(policy, t2)
    matrix.scenario("update a policy (Block to Audit), then delete it", "EACCES; allowed + Audit; allowed, no alert",
                    one_alert(policy, t1))


def test_audit_etc_hosts_read_by_cat(agent, matrix):
    policy = name("audit-hosts")
    body = "  file:\n    matchPaths:\n    - path: /etc/hosts\n      fromSource:\n      - path: /bin/cat\n  action: Audit\n"
    with applied(agent, policy, body):
        t0 = time.time()
        assert run("head", "-1", "/etc/hosts").returncode == 0
        assert run("cat", "/etc/hosts").returncode == 0
        recs = [r for r in journal(policy, since=t0) if r["Type"] == "MatchedHostPolicy"] or [one_alert(policy, t0)]
        assert {r["Source"] for r in recs} == {"/usr/bin/cat"}  # head is not cat
        assert fields(recs[-1], "Action", "Enforcer", "Result", "Resource") == {
            "Action": "Audit", "Enforcer": "BPFLSM", "Result": "Passed", "Resource": "/etc/hosts"}
    matrix.scenario("audit /etc/hosts read by cat (fromSource /bin/cat)", "allowed; head not audited", recs[-1])


def test_audit_udp(agent, matrix):
    policy = name("audit-udp")
    body = f"  network:\n    matchProtocols:\n    - protocol: udp\n      fromSource:\n      - path: {BUSYBOX}\n  action: Audit\n"
    with applied(agent, policy, body):
        t0 = time.time()
        p = run(BUSYBOX, "nslookup", "localhost", "127.0.0.1", timeout=30)
        assert "Permission denied" not in p.stderr
        rec = one_alert(policy, t0)
        assert fields(rec, "Action", "Enforcer", "Result", "Operation") == {
            "Action": "Audit", "Enforcer": "BPFLSM", "Result": "Passed", "Operation": "Network"}
        assert rec["Resource"].startswith("domain=AF_INET type=SOCK_DGRAM")
        assert rec["Data"] == "syscall=SYS_SOCKET lsm=SECURITY_SOCKET_CREATE"
    matrix.scenario("audit UDP (fromSource busybox)", "allowed", rec)


def test_audit_unlink_syscall(agent, matrix, scratch):
    policy = name("audit-unlink")
    victim = scratch.file("victim.txt")
    with applied(agent, policy, "  syscalls:\n    matchSyscalls:\n    - syscall: [unlink]\n"):
        t0 = time.time()
        assert run(BUSYBOX, "unlink", victim).returncode == 0
        rec = one_alert(policy, t0)
        assert fields(rec, "Action", "Enforcer", "Result", "Operation") == {
            "Action": "Audit", "Enforcer": "eBPF Monitor", "Result": "Passed", "Operation": "Syscall"}
        assert rec["Data"].startswith("syscall=SYS_UNLINK")
    matrix.scenario("audit the unlink syscall", "allowed (the eBPF monitor audits syscalls)", rec)


def test_read_only_lets_cat_read_but_not_append(agent, matrix, scratch):
    notes = scratch.file("notes.txt", "one\n")
    policy = name("readonly-notes")
    with applied(agent, policy, f"  file:\n    matchPaths:\n    - path: {notes}\n      readOnly: true\n  action: Block\n"):
        t0 = time.time()
        assert run("cat", notes).stdout == "one\n"
        p = run("bash", "-c", f"echo two >> {notes}")
        assert p.returncode != 0 and "Permission denied" in p.stderr, p.stderr
        assert denied(run("truncate", "-s", "0", notes))
        rec = one_alert(policy, t0)
        assert fields(rec, "Action", "Enforcer", "Result") == BLOCKED and rec["ProcessName"] in ("/usr/bin/bash",
                                                                                                "/usr/bin/truncate")
        no_alert(policy, t0, settle=0.5, KARMOR_PROCESS_NAME="/usr/bin/cat")  # reading is what it allows
    assert run("bash", "-c", f"echo two >> {notes}").returncode == 0
    assert run("cat", notes).stdout == "one\ntwo\n"
    matrix.scenario("readOnly: cat reads; echo >> and truncate are denied", "reads allowed, writes EACCES", rec)


def test_owner_only_lets_the_owner_in_and_no_one_else(agent, matrix, scratch):
    own = scratch.file("owned.txt", "mine\n")
    os.chown(own, 65534, 65534)
    policy = name("owner-only")
    with applied(agent, policy, f"  file:\n    matchPaths:\n    - path: {own}\n      ownerOnly: true\n  action: Block\n"):
        t0 = time.time()
        as_owner = run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", own)
        assert as_owner.returncode == 0 and as_owner.stdout == "mine\n", as_owner.stderr
        assert denied(run("cat", own))  # root is not the owner
        rec = one_alert(policy, t0)
        assert fields(rec, "Action", "Enforcer", "Result") == BLOCKED and rec["UID"] == 0
    matrix.scenario("ownerOnly: the owner reads; root, not the owner, is denied", "owner allowed, others EACCES", rec)
