"""KubeArmor's published host-policy shapes compile to what they mean (see data/kubearmor)."""

from __future__ import annotations

from pathlib import Path

import pytest

from karmor_host.policy import Canonicalizer, HostIdentity, compile_policies, load_text
from karmor_host.policy.ruleset import Action, Operation, Rule, TargetKind

from .helpers import DATA

DEV = HostIdentity.detect(hostname="kubearmor-dev")


@pytest.fixture
def resolve(tmp_path: Path) -> Canonicalizer:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    return Canonicalizer(tmp_path)


def compiled(name: str, resolve: Canonicalizer, identity: HostIdentity = DEV) -> list[Rule]:
    path = DATA / "kubearmor" / f"{name}.yaml"
    result = load_text(path.read_text(), path.name)
    assert result.valid
    rs = compile_policies(result.policies, identity, resolve=resolve)
    assert all(p.applies for p in rs.policies)
    return list(rs.rules)


def shape(r: Rule) -> tuple[object, ...]:
    return (r.operation, r.kind, r.target, r.original, r.action,
            tuple((s.path, s.original) for s in r.sources), r.recursive, r.syscall)


P, F, N, C, S = Operation.PROCESS, Operation.FILE, Operation.NETWORK, Operation.CAPABILITIES, Operation.SYSCALL
PATH, DIR = TargetKind.PATH, TargetKind.DIR


@pytest.mark.parametrize("name,expected", [
    ("hsp-proc-path-block-ls", [(P, PATH, "/usr/bin/ls", "/bin/ls", Action.BLOCK, (), False, "")]),
    ("hsp-proc-path-block-curl", [(P, PATH, "/usr/bin/curl", "/usr/bin/curl", Action.BLOCK, (), False, "")]),
    ("hsp-file-path-block-passwd", [(F, PATH, "/etc/passwd", "/etc/passwd", Action.BLOCK, (), False, "")]),
    ("hsp-file-dir-block-etc", [(F, DIR, "/etc/", "/etc/", Action.BLOCK,
                                 (("/usr/bin/head", "/usr/bin/head"),), True, "")]),
    ("hsp-proc-dir-block-usr-bin", [(P, DIR, "/usr/bin/", "/usr/bin/", Action.BLOCK,
                                     (("/usr/bin/bash", "/bin/bash"),), False, "")]),
    ("hsp-proc-pattern-block-apt", [(P, TargetKind.PATTERN, "/usr/bin/apt*", "/usr/bin/apt*",
                                     Action.BLOCK, (), False, "")]),
    ("hsp-file-path-audit-hosts-fromsource", [(F, PATH, "/etc/hosts", "/etc/hosts", Action.AUDIT,
                                               (("/usr/bin/cat", "/bin/cat"),), False, "")]),
    ("hsp-net-udp-audit-fromsource", [(N, TargetKind.PROTOCOL, "udp", "udp", Action.AUDIT,
                                       (("/usr/bin/dig", "/usr/bin/dig"),), False, "")]),
    ("hsp-cap-net-raw-block-fromsource", [(C, TargetKind.CAPABILITY, "net_raw", "net_raw", Action.BLOCK,
                                           (("/usr/bin/ping", "/bin/ping"),), False, "")]),
    ("hsp-syscall-unlink-audit", [
        (S, TargetKind.SYSCALL, "unlink", "unlink", Action.AUDIT, (), False, ""),
        (S, DIR, "/home/", "/home/", Action.AUDIT, (), True, "unlink"),
    ]),
])
def test_shape_compiles_to_its_meaning(name: str, expected: list[tuple[object, ...]],
                                       resolve: Canonicalizer) -> None:
    assert sorted(map(shape, compiled(name, resolve)), key=repr) == sorted(expected, key=repr)


def test_update_keeps_the_rule_id(resolve: Canonicalizer) -> None:
    (before,) = compiled("hsp-proc-path-block-ls", resolve)
    (after,) = compiled("hsp-proc-path-block-ls-update", resolve)
    assert before.id == after.id
    assert (before.action, before.severity) == (Action.BLOCK, 5)
    assert (after.action, after.severity) == (Action.AUDIT, 3)


def test_shapes_for_another_host_are_reported_not_dropped(resolve: Canonicalizer) -> None:
    path = DATA / "kubearmor" / "hsp-proc-path-block-curl.yaml"
    policies = load_text(path.read_text(), path.name).policies
    rs = compile_policies(policies, HostIdentity.detect(hostname="elsewhere"), resolve=resolve)
    (info,) = rs.policies
    assert rs.rules == () and not info.applies
    assert info.reason == "kubearmor.io/hostname 'kubearmor-dev' does not name this host (elsewhere)"
