"""The generated module against the real installed policy (selinux-policy-default), on this
host: no SELinux kernel needed, only the policy store and its tools.

- Modules rendered with facts read from the installed binary policy compile with secilc
  together with every module of the store (what Backend.check does before any install).
- The enforcer's whole cycle on a private copy of the store (`semodule -p ROOT -n`): install,
  replace, label files (ext4 keeps security.selinux xattrs even without SELinux), remove --
  after which the store and the labels are what they were.
Needs root and the Debian packages selinux-policy-default, policycoreutils, semodule-utils,
secilc and python3-setools (`make deps`); their absence is a failure, not a skip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from karmor_host.enforce.selinux import policyfacts
from karmor_host.enforce.selinux.backend import Backend
from karmor_host.enforce.selinux.enforcer import SELinuxEnforcer
from karmor_host.enforce.selinux.inventory import Mount
from karmor_host.enforce.selinux.render import MODULE, plan
from karmor_host.policy import compile_policies, load_text, merge
from karmor_host.policy.ruleset import Category, Posture
from tests.unit.enforce.selinux.helpers import DATA, IDENTITY, inventory_for, ruleset_of
from tests.unit.enforce.selinux.test_inventory import FakeLabels

COMPILED = ("blocks", "from-source", "whitelist")
NEEDS = "run `make deps` (selinux-policy-default, policycoreutils, semodule-utils, secilc, python3-setools)"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A private copy of the installed policy store: etc/selinux and var/lib/selinux."""
    for tool in ("semodule", "secilc"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: {NEEDS}")
    if not Path("/var/lib/selinux").is_dir() or not policyfacts.selinux_type():
        pytest.fail(f"no SELinux policy store installed: {NEEDS}")
    if os.geteuid() != 0:
        pytest.fail("semodule on a store copy needs root (the store's files are root's)")
    root = tmp_path_factory.mktemp("sestore")
    (root / "etc").mkdir()
    (root / "var/lib").mkdir(parents=True)
    shutil.copytree("/etc/selinux", root / "etc/selinux", symlinks=True)
    shutil.copytree("/var/lib/selinux", root / "var/lib/selinux", symlinks=True)
    return root


@pytest.fixture(scope="module")
def real_facts(store, tmp_path_factory):
    cache = tmp_path_factory.mktemp("facts")
    types = {"etc_t", "bin_t", "var_t", "sshd_exec_t", "tmpfs_t"}
    return policyfacts.read(policyfacts.policy_file(store), types, cache_dir=cache)


def test_facts_of_the_installed_policy(real_facts):
    assert real_facts.reference == "unconfined_t" and real_facts.transition_from == "unconfined_domain_type"
    assert {"kernel_t", "unconfined_t", "initrc_t"} <= real_facts.unconfined
    ref = real_facts.type("unconfined_t")
    assert "unconfined_domain_type" in ref.attributes and "unconfined_r" in ref.roles
    assert any(r.tclass == "capability" and r.source == r.target == "unconfined_t" for r in ref.rules)
    assert "extended_socket_class" in real_facts.polcaps and "icmp_socket" in real_facts.classes


def test_fixture_modules_compile_against_the_installed_policy(store, real_facts):
    # the fixtures with something to enforce, as one rule set: one secilc run
    result = merge([load_text((DATA / f"{n}.yaml").read_text(), f"{n}.yaml") for n in COMPILED])
    assert result.ok, [str(p) for p in result.problems]
    rs = compile_policies(result.policies, IDENTITY, {c: Posture.BLOCK for c in Category}, resolve=str)
    p = plan(rs, real_facts, inventory_for(rs))
    enforced = {r.policy for r in rs.rules if r.id in p.reported()}
    assert {"block-global", "from-source", "only-what-nginx-needs", "nginx-never-shadow"} <= enforced
    assert p.whitelists == frozenset(Category)
    Backend(store / "state", store).check(p.cil)


def test_a_broken_module_is_refused_before_install(store):
    from karmor_host.errors import EnforcerError

    with pytest.raises(EnforcerError, match="compiling module karmor"):
        Backend(store / "state", store).check("(allow karmor_x_t no_such_type_t (file (read)))\n")


def _digest(root: Path) -> dict[str, str]:
    """The store's content, minus its transaction counter."""
    out = {}
    for base in ("etc/selinux", "var/lib/selinux"):
        for path in sorted((root / base).rglob("*")):
            if path.is_file() and path.name not in ("commit_num",) and not path.name.endswith(".LOCK"):
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_install_replace_label_and_remove_leave_store_and_labels_as_they_were(store, tmp_path):
    import selinux

    files = tmp_path / "files"
    files.mkdir()
    originals = {}
    for name, ctx in (("secret", "system_u:object_r:etc_t:s0"), ("kcat", "system_u:object_r:bin_t:s0"),
                      ("notes", "system_u:object_r:var_t:s0")):
        path = files / name
        path.write_text(name)
        selinux.lsetfilecon_raw(str(path), ctx)
        originals[str(path)] = ctx
    before = _digest(store)
    enforcer = SELinuxEnforcer(backend=Backend(tmp_path / "state", store), labels=CurrentLabels(),
                               mounts=[Mount(str(files), "ext4", True)])
    rs = ruleset_of(f"""\
  action: Block
  file:
    matchPaths:
    - path: {files}/secret
      fromSource:
      - path: {files}/kcat
""")
    report = enforcer.apply(rs)
    assert [s.mode for s in report.rules] == ["enforced"], report
    assert MODULE in enforcer.backend.modules()
    cur = {p: selinux.lgetfilecon_raw(p)[1] for p in originals}
    assert cur[f"{files}/secret"].split(":")[2].startswith("karmor_")
    assert cur[f"{files}/kcat"].split(":")[2].startswith("karmor_")
    assert cur[f"{files}/notes"] == originals[f"{files}/notes"]
    fc = (store / "etc/selinux" / policyfacts.selinux_type(store) / "contexts/files/file_contexts").read_text()
    assert f"{files}/secret" in fc  # a relabel keeps the label while the module is installed
    state = enforcer.backend.read_state()
    assert state.originals() == {p: originals[p] for p in (f"{files}/secret", f"{files}/kcat")}

    # replace: a different rule set moves the labels, restoring what it no longer needs
    rs2 = ruleset_of(f"""\
  action: Block
  file:
    matchPaths:
    - path: {files}/notes
      readOnly: true
""")
    report = enforcer.apply(rs2)
    assert [s.mode for s in report.rules] == ["enforced"]
    assert selinux.lgetfilecon_raw(f"{files}/secret")[1] == originals[f"{files}/secret"]
    assert selinux.lgetfilecon_raw(f"{files}/kcat")[1] == originals[f"{files}/kcat"]
    assert selinux.lgetfilecon_raw(f"{files}/notes")[1].split(":")[2].startswith("karmor_")
    # the same rule set again: nothing to install
    assert "installed" not in " ".join(enforcer.apply(rs2).notes)

    enforcer.remove()
    assert MODULE not in enforcer.backend.modules()
    assert {p: selinux.lgetfilecon_raw(p)[1] for p in originals} == originals
    assert not (tmp_path / "state" / "state.json").exists()
    after = _digest(store)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"store files differ after install and remove: {changed}"


class CurrentLabels(FakeLabels):
    """Contexts as the files' xattrs hold them (this host's kernel has no SELinux)."""

    def __init__(self):
        super().__init__(enabled=True)

    def current(self, path):
        import selinux

        try:
            return selinux.lgetfilecon_raw(path)[1]
        except OSError:
            return ""
