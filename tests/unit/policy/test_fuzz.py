"""Property tests: whatever text or structure reaches the loader, only Problems come out."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from karmor_host.errors import Problem
from karmor_host.policy import HostIdentity, compile_policies, load_text
from karmor_host.policy.ruleset import RuleSet

from .helpers import DATA, REPO

SEEDS = sorted((REPO / "policies").glob("*.yaml")) + sorted((DATA / "kubearmor").glob("*.yaml"))
SEED_TEXTS = [p.read_text() for p in SEEDS]
SEED_DOCS = [d for t in SEED_TEXTS for d in yaml.safe_load_all(t) if d]
IDENTITY = HostIdentity("fuzz-host", {"kubearmor.io/hostname": "fuzz-host"})
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
    result = load_text(text, "fuzz.yaml")  # must not raise
    assert all(isinstance(p, Problem) and p.line >= 0 and p.col >= 0 for p in result.problems)
    assert all(isinstance(str(p), str) for p in result.problems)
    if result.valid:
        rs = compile_policies(result.policies, IDENTITY, resolve=lambda p: p)
        assert isinstance(rs, RuleSet)
    else:
        assert result.policies == ()


scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=30),
    st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=True),
    st.sampled_from(["/etc/passwd", "/usr/bin/", "tcp,udp", "CAP_NET_RAW", "Block", "allow",
                     "unlink", "*", "ünïcødé/\u202e", "9" * 5000, "..", "/a/../b", ""]),
)
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=12), st.sampled_from(
            ["path", "dir", "fromSource", "matchPaths", "severity", "action", "syscall",
             "protocol", "capability", "recursive", "readOnly", "tags", "message"])), inner, max_size=4),
    ),
    max_leaves=20,
)


@FUZZ
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.sampled_from(SEED_TEXTS), st.data())
def test_random_edits_of_valid_policy_text(text: str, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 5))
        insert = data.draw(st.text(max_size=5, alphabet=st.sampled_from(list(":-[]{}&*!|>'\"#\n\t ,x9é\x00"))))
        text = text[:at] + insert + text[at + cut:]
    check(text)


@FUZZ
@given(structures)
def test_random_structures(value: Any) -> None:
    check(yaml.safe_dump(value, allow_unicode=True))
    check(yaml.safe_dump({"apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorHostPolicy",
                          "metadata": {"name": "x"}, "spec": value}, allow_unicode=True))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


@FUZZ
@given(st.sampled_from(SEED_DOCS), st.data())
def test_random_mutations_of_valid_policies(doc: dict[str, Any], data: st.DataObject) -> None:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(doc)[1:]))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        how = data.draw(st.sampled_from(["delete", "replace", "unicode", "huge", "wrap"]))
        if how == "delete":
            del parent[last]
        elif how == "replace":
            parent[last] = data.draw(structures)
        elif how == "unicode":
            parent[last] = data.draw(st.text(min_size=1, max_size=20))
        elif how == "huge":
            parent[last] = data.draw(st.sampled_from([10**400, -(10**400), float("inf"), 2**63, 1e308]))
        else:
            parent[last] = [parent[last]]
    check(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


def test_seeds_are_valid() -> None:
    """The mutation seeds must start valid, or the mutations prove nothing."""
    assert len(SEEDS) >= 20
    for path, text in zip(SEEDS, SEED_TEXTS):
        assert load_text(text, path.name).valid, path
