"""The enforcer's logic over a stand-in backend: applies, failures, refresh, what it reports,
and its alerts through the real matcher and pipeline (the kernel half runs in tests/vm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from karmor_host.alerts.match import Matcher
from karmor_host.alerts.pipeline import AlertPipeline
from karmor_host.alerts.record import HostInfo
from karmor_host.alerts.throttle import Throttle
from karmor_host.enforce.bpflsm import abi
from karmor_host.enforce.bpflsm.enforcer import BpfLsmEnforcer
from karmor_host.enforce.bpflsm.events import decode
from karmor_host.enforce.bpflsm.plan import Protection
from karmor_host.errors import EnforcerError, KernelError
from karmor_host.kernel.events import Event, EventKind
from karmor_host.policy.ruleset import Category, Posture
from tests.unit.enforce.bpflsm.helpers import HEAD, resolve, ruleset_of
from tests.unit.enforce.bpflsm.records import record


class FakeBackend:
    def __init__(self) -> None:
        self.generation = 0
        self.swaps = []
        self.pinned = False
        self.closed = False
        self.fail = False
        self.missing: set[str] = {"/missing/"}
        self.records: list[bytes] = []
        self.mode, self.pin_dir, self.load_seconds, self.undecodable = "loaded", Path("/x"), 0.0, 0

    def resolve(self, directory: str):
        if any(directory.startswith(m) for m in self.missing):
            return None
        return resolve(directory.replace("/missing/", "/present/"))

    def swap(self, bp, generation):
        if self.fail:
            raise KernelError("map full", 7)
        self.swaps.append((bp, generation))
        self.generation = generation
        return {"total": 0.001}

    def pin(self):
        self.pinned = True

    def read(self, timeout_ms):
        out = [decode(r, 0, len(r)) for r in self.records]
        self.records = []
        return out

    def drops(self):
        return 0

    def close(self):
        self.closed = True

    def remove(self):
        self.close()
        return ["lsm_state"]


BLOCK = ruleset_of(HEAD.format(name="block-x") + "  file:\n    matchPaths:\n    - path: /etc/x\n"
                   "    matchPatterns:\n    - pattern: /etc/*.key\n  syscalls:\n    matchSyscalls:\n"
                   "    - syscall: [unlink]\n  action: Block\n")


@pytest.fixture
def enf():
    return BpfLsmEnforcer(backend=FakeBackend(), protection=Protection())


def test_apply_swaps_pins_and_reports(enf):
    report = enf.apply(BLOCK)
    assert enf.backend.pinned and enf.backend.swaps[0][1] == 1
    assert report.enforcer == "bpflsm" and report.counts() == {"enforced": 1, "audit-only": 1, "monitor": 1}
    assert report.seconds >= 0
    enf.apply(BLOCK)
    assert [g for _, g in enf.backend.swaps] == [1, 2]


def test_failed_apply_keeps_the_previous_rule_set(enf):
    enf.apply(BLOCK)
    before = enf.plan
    enf.backend.fail = True
    with pytest.raises(EnforcerError, match="previous one stays"):
        enf.apply(ruleset_of(HEAD.format(name="other") + "  file:\n    matchPaths:\n    - path: /etc/y\n  action: Block\n"))
    assert enf.plan is before and enf.ruleset is BLOCK


def test_can_block_and_reports_follow_the_kernel_plan(enf):
    assert not enf.can_block(BLOCK.rules[0], Category.FILE) and not enf.reports(None, Category.FILE)
    enf.apply(BLOCK)
    by = {r.kind.value: r for r in BLOCK.rules}
    assert enf.can_block(by["path"], Category.FILE) and enf.reports(by["path"], Category.FILE)
    assert not enf.can_block(by["pattern"], Category.FILE) and not enf.reports(by["pattern"], Category.FILE)
    assert not enf.reports(by["syscall"], None)


def test_refresh_reapplies_only_when_a_path_appears(enf):
    rs = ruleset_of(HEAD.format(name="later") + "  file:\n    matchPaths:\n    - path: /missing/app/conf\n  action: Block\n")
    report = enf.apply(rs)
    assert report.counts() == {"pending": 1} and any("/missing/app/" in n for n in report.notes)
    assert enf.refresh() is None
    enf.backend.missing = set()
    report = enf.refresh()
    assert report is not None and report.counts() == {"enforced": 1}
    assert enf.refresh() is None


def test_poll_names_rules_of_the_generation_that_decided(enf):
    enf.apply(BLOCK)
    rule = next(r for r in BLOCK.rules if r.kind.value == "path")
    enf.apply(ruleset_of(HEAD.format(name="other") + "  file:\n    matchPaths:\n    - path: /etc/y\n  action: Block\n"))
    enf.backend.records = [record(abi.Hook.FILE_OPEN, abi.Op.FILE, hits=[(rule.id, abi.Action.BLOCK)], retval=-13,
                                  generation=1, path="/etc/x")]
    (a,) = enf.poll(0)
    assert a.decision.policy_name == "block-x" and a.decision.action == "Block"
    assert enf.status()["decisions"] == 1


def test_close_and_remove(enf):
    enf.close()
    assert enf.backend.closed
    assert enf.status()["generation"] == -1


def test_matcher_leaves_what_the_enforcer_reports(enf):
    rs = ruleset_of(HEAD.format(name="audit-x") + "  file:\n    matchPaths:\n    - path: /etc/x\n"
                    "    matchPatterns:\n    - pattern: /etc/*\n  action: Audit\n")
    enf.apply(rs)
    ev = Event(EventKind.OPEN, 0, 1, 1, 0, 0, 0, "cat", "/usr/bin/cat", "/usr/bin/bash", path="/etc/x")
    both = Matcher(rs, False).match(ev)
    split = Matcher(rs, enf.can_block, enf.reports).match(ev)
    assert [d.policy_name for d in both] == ["audit-x"]  # one alert per policy
    # the path rule is the enforcer's; the pattern rule (audit-only on BPF-LSM) is still the matcher's
    assert [d.rule.kind.value for d in split] == ["pattern"]


def test_posture_stays_with_the_matcher_unless_the_kernel_applies_it(enf):
    rs = ruleset_of(HEAD.format(name="allow") + "  file:\n    matchPaths:\n    - path: /srv/a\n  action: Allow\n",
                    {Category.FILE: Posture.BLOCK})
    enf.apply(rs)
    ev = Event(EventKind.OPEN, 0, 1, 1, 0, 0, 0, "cat", "/usr/bin/cat", "/usr/bin/bash", path="/srv/b")
    assert Matcher(rs, False).match(ev)[0].policy_name == "DefaultPosture"
    assert Matcher(rs, enf.can_block, enf.reports).match(ev) == []


class ListSink:
    name = "list"
    telemetry = False

    def __init__(self):
        self.records, self.sent, self.failed = [], 0, 0

    def emit(self, rec):
        self.records.append(rec)
        self.sent += 1

    def flush(self):
        pass

    def close(self):
        pass


def test_pipeline_sends_enforcer_alerts_with_the_enforcer_name(enf):
    enf.apply(BLOCK)
    rule = next(r for r in BLOCK.rules if r.kind.value == "path")
    enf.backend.records = [record(abi.Hook.FILE_OPEN, abi.Op.FILE, hits=[(rule.id, abi.Action.BLOCK)], retval=-13,
                                  generation=1, path="/etc/x", syscall_nr=257, open_flags=0)]
    sink = ListSink()
    pipe = AlertPipeline(Matcher(BLOCK, enf.can_block, enf.reports), Throttle(enabled=False), [sink],
                         HostInfo("default", "h1", "id"), enforcer="BPFLSM")
    pipe.handle_enforcer(enf.poll(0))
    (rec,) = sink.records
    assert {k: rec[k] for k in ("PolicyName", "Action", "Enforcer", "Result", "Operation", "Resource", "Data")} == {
        "PolicyName": "block-x", "Action": "Block", "Enforcer": "BPFLSM", "Result": "Permission denied",
        "Operation": "File", "Resource": "/etc/x", "Data": "syscall=SYS_OPENAT flags=O_RDONLY lsm=SECURITY_FILE_OPEN"}
    assert pipe.stats()["enforcer_alerts"] == 1 and pipe.stats()["per_policy"] == {"block-x": 1}
