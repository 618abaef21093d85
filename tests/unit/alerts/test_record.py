"""KubeArmor record fields and enumerations, as golden dicts written from kubearmor-compat.md §2."""

from __future__ import annotations

import errno

import pytest

from karmor_host.alerts import record
from karmor_host.alerts.record import HostInfo
from karmor_host.kernel.events import EventKind
from karmor_host.policy.ruleset import Action, Operation, TargetKind

from .helpers import event, executed, opened, rule

HOST = HostInfo("default", "web-1", "0123456789abcdef0123456789abcdef")

IDENTITY = {
    "Timestamp": 1717259989,
    "UpdatedTime": "2024-06-01T16:39:49.360067Z",
    "ClusterName": "default",
    "HostName": "web-1",
    "NodeID": "0123456789abcdef0123456789abcdef",
    "HostPPID": 1582,
    "HostPID": 2420,
    "PPID": 1582,
    "PID": 2420,
    "UID": 1000,
    "ParentProcessName": "/usr/bin/bash",
}


def test_host_log_open_golden():
    ev = opened("/etc/shadow", flags=0o2000000, retval=-errno.EACCES)
    assert record.host_log(ev, HOST) == {
        **IDENTITY,
        "ProcessName": "/usr/bin/cat",
        "Type": "HostLog",
        "Source": "/usr/bin/cat",
        "Operation": "File",
        "Resource": "/etc/shadow",
        "Data": "syscall=SYS_OPENAT flags=O_RDONLY|O_CLOEXEC",
        "Result": "Permission denied",
        "Cwd": "/home/u/",
        "TTY": "pts0",
    }


def test_alert_exec_golden():
    ev = executed("/usr/bin/sleep", argv=("sleep", "10"), cwd="/", tty="")
    r = rule(
        Operation.PROCESS,
        TargetKind.PATH,
        "/usr/bin/sleep",
        Action.BLOCK,
        policy="block-sleep",
        severity=1,
        tags=("MITRE", "T1059"),
        message="no sleeping",
    )
    got = record.alert(ev, r, HOST, "Audit (Block)", "eBPF Monitor", "block-sleep")
    assert got == {
        **IDENTITY,
        "ProcessName": "/usr/bin/sleep",
        "PolicyName": "block-sleep",
        "Severity": "1",
        "Tags": "MITRE,T1059",
        "ATags": ["MITRE", "T1059"],
        "Message": "no sleeping",
        "Type": "MatchedHostPolicy",
        "Source": "/usr/bin/bash",
        "Operation": "Process",
        "Resource": "/usr/bin/sleep 10",
        "Data": "syscall=SYS_EXECVE",
        "Enforcer": "eBPF Monitor",
        "Action": "Audit (Block)",
        "Result": "Passed",
        "Cwd": "/",
        "TTY": "",
    }


def test_default_posture_alert_has_no_rule_fields_and_lsm_data():
    ev = opened("/etc/hosts", flags=1, retval=-errno.EPERM)
    got = record.alert(ev, None, HOST, "Block", "BPFLSM", "DefaultPosture", lsm="SECURITY_FILE_OPEN")
    assert (got["PolicyName"], got["Severity"], got["Tags"], got["ATags"], got["Message"]) == (
        "DefaultPosture", "", "", [], ""
    )
    assert got["Data"] == "syscall=SYS_OPENAT flags=O_WRONLY lsm=SECURITY_FILE_OPEN"
    assert got["Result"] == "Operation not permitted"
    assert got["Enforcer"] == "BPFLSM"


def test_alert_field_order_is_stable():
    ev = opened("/etc/hosts")
    keys = list(record.alert(ev, None, HOST, "Audit", "eBPF Monitor", "DefaultPosture"))
    assert keys == [
        "Timestamp", "UpdatedTime", "ClusterName", "HostName", "NodeID", "HostPPID", "HostPID",
        "PPID", "PID", "UID", "ParentProcessName", "ProcessName", "PolicyName", "Severity",
        "Tags", "ATags", "Message", "Type", "Source", "Operation", "Resource", "Data",
        "Enforcer", "Action", "Result", "Cwd", "TTY",
    ]


@pytest.mark.parametrize(
    "fields, resource, data",
    [
        (
            dict(family=2, sock_type=3, protocol=1),
            "domain=AF_INET type=SOCK_RAW protocol=ICMP",
            "syscall=SYS_SOCKET",
        ),
        (
            dict(family=2, sock_type=2 | 0o4000 | 0o2000000, protocol=0),
            "domain=AF_INET type=SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC protocol=0",
            "syscall=SYS_SOCKET",
        ),
        (
            dict(family=10, sock_type=2, protocol=58),
            "domain=AF_INET6 type=SOCK_DGRAM protocol=ICMPv6",
            "syscall=SYS_SOCKET",
        ),
        (
            # AF_PACKET's protocol is an ethertype, printed as the number KubeArmor prints
            dict(family=17, sock_type=3, protocol=768),
            "domain=AF_PACKET type=SOCK_RAW protocol=768",
            "syscall=SYS_SOCKET",
        ),
    ],
)
def test_socket_resource(fields, resource, data):
    got = record.host_log(event(EventKind.SOCKET, **fields), HOST)
    assert (got["Operation"], got["Resource"], got["Data"]) == ("Network", resource, data)


def test_connect_bind_accept_addresses():
    tcp = dict(family=2, sock_type=1, protocol=6, saddr="10.0.0.5", sport=40000,
               daddr="93.184.216.34", dport=443)
    con = record.host_log(event(EventKind.CONNECT, **tcp), HOST)
    assert con["Resource"] == "sa_family=AF_INET sin_port=443 sin_addr=93.184.216.34"
    assert con["Data"] == "syscall=SYS_CONNECT type=SOCK_STREAM protocol=TCP"
    bind = record.host_log(event(EventKind.BIND, **tcp), HOST)
    assert bind["Resource"] == "sa_family=AF_INET sin_port=40000 sin_addr=10.0.0.5"
    acc = record.host_log(
        event(EventKind.ACCEPT, family=10, sock_type=1, protocol=6, daddr="::1", dport=5555,
              syscall="accept4"),
        HOST,
    )
    assert acc["Resource"] == "sa_family=AF_INET6 sin6_port=5555 sin6_addr=::1"
    assert acc["Data"] == "syscall=SYS_ACCEPT4 type=SOCK_STREAM protocol=TCP"


def test_capability_syscall_fork_exit():
    cap = record.host_log(event(EventKind.CAPABLE, capability=13), HOST)
    assert (cap["Operation"], cap["Resource"], cap["Data"]) == (
        "Capabilities", "CAP_NET_RAW", "capability=CAP_NET_RAW"
    )
    cap2 = record.host_log(event(EventKind.CAPABLE, capability=21, syscall="mount"), HOST)
    assert cap2["Data"] == "syscall=SYS_MOUNT capability=CAP_SYS_ADMIN"
    sc = record.host_log(event(EventKind.SYSCALL, syscall="unlinkat", path="/tmp/x",
                               retval=-errno.ENOENT), HOST)
    assert (sc["Operation"], sc["Resource"], sc["Data"], sc["Result"]) == (
        "Syscall", "/tmp/x", "syscall=SYS_UNLINKAT", "No such file or directory"
    )
    fork = record.host_log(event(EventKind.FORK), HOST)
    assert (fork["Operation"], fork["Resource"], fork["Data"]) == (
        "Process", "/usr/bin/cat", "syscall=SYS_CLONE"
    )
    ex = record.host_log(event(EventKind.EXIT, retval=3), HOST)
    assert (ex["Data"], ex["Result"]) == ("syscall=SYS_EXIT_GROUP exit_code=3", "Passed")


def test_result_texts():
    def res(rv: int) -> str:
        return record.host_log(opened("/x", retval=rv), HOST)["Result"]

    assert res(3) == "Passed"
    assert res(0) == "Passed"
    assert res(-errno.EACCES) == "Permission denied"
    assert res(-errno.EPERM) == "Operation not permitted"
    assert res(-errno.ENOENT) == "No such file or directory"
    assert res(-4000) == "Unknown (-4000)"


def test_system_event():
    got = record.system_event(HOST, "AlertThreshold", "too many", data="throttle=start",
                              ts_ns=1_717_259_989_000_001_000, extra={"MaxAlertsPerSec": 10})
    assert got == {
        "Timestamp": 1717259989,
        "UpdatedTime": "2024-06-01T16:39:49.000001Z",
        "ClusterName": "default",
        "HostName": "web-1",
        "NodeID": "0123456789abcdef0123456789abcdef",
        "Type": "SystemEvent",
        "Operation": "AlertThreshold",
        "Message": "too many",
        "Data": "throttle=start",
        "MaxAlertsPerSec": 10,
    }


def test_host_info_detect(tmp_path):
    mid = tmp_path / "machine-id"
    mid.write_text("abcdef0123456789abcdef0123456789\n")
    info = HostInfo.detect(cluster_name="prod", host_name="h1", machine_id_path=mid)
    assert info == HostInfo("prod", "h1", "abcdef0123456789abcdef0123456789")
    missing = HostInfo.detect(machine_id_path=tmp_path / "none")
    assert missing.node_id == "" and missing.cluster_name == "default" and missing.host_name


@pytest.mark.parametrize(
    "syscall, path, args, data",
    [
        ("setuid", "", (0,), "syscall=SYS_SETUID userid=0"),
        ("chown", "/tmp/f", (1000, 100), "syscall=SYS_CHOWN userid=1000 group=100"),
        ("fchownat", "/tmp/f", (0, 0, 256), "syscall=SYS_FCHOWNAT userid=0 group=0 mode=256"),
        ("unlinkat", "/tmp/d", (512,), "syscall=SYS_UNLINKAT flags=512"),
        ("ptrace", "", (16, 4242), "syscall=SYS_PTRACE request=16 pid=4242"),
        ("mount", "/mnt", ("tmpfs", "tmpfs", 0),
         "syscall=SYS_MOUNT source=tmpfs target=/mnt filesystem=tmpfs mountflag=0"),
        ("umount2", "/mnt", (2,), "syscall=SYS_UMOUNT2 target=/mnt flag=2"),
        ("kexec_load", "", (1, 2), "syscall=SYS_KEXEC_LOAD args=1,2"),
        ("unlink", "/tmp/x", (), "syscall=SYS_UNLINK"),
    ],
)
def test_syscall_arguments_in_data(syscall, path, args, data):
    ev = event(EventKind.SYSCALL, syscall=syscall, path=path, sys_args=args)
    assert record.host_log(ev, HOST)["Data"] == data
