"""The policy store keeps the last good version of each file and refuses unsafe files."""

import os

import pytest

from karmor_host.policy.store import PolicyStore
from tests.policytext import host_policy

POLICY = host_policy("{name}", """\
  severity: {severity}
  file:
    matchPaths:
    - path: /etc/shadow
  action: Audit
""")  # a template: POLICY.format(name=..., severity=...)


def write(path, text, mode=0o644):
    path.write_text(text)
    os.chmod(path, mode)


def names(result):
    return [p.name for p in result.policies]


@pytest.fixture
def pdir(tmp_path):
    d = tmp_path / "policies"
    d.mkdir(mode=0o755)
    return d


def test_loads_files_and_sees_deletion(pdir):
    write(pdir / "a.yaml", POLICY.format(name="a", severity=5))
    write(pdir / "b.yml", POLICY.format(name="b", severity=5))
    write(pdir / "notes.txt", "not a policy")
    store = PolicyStore(pdir)
    r = store.scan()
    assert r.changed and names(r) == ["a", "b"] and not r.rejections
    assert not store.scan().changed  # nothing new: no re-read
    (pdir / "b.yml").unlink()
    r = store.scan()
    assert r.changed and names(r) == ["a"]


def test_broken_edit_keeps_last_good_version(pdir):
    f = pdir / "a.yaml"
    write(f, POLICY.format(name="a", severity=5))
    store = PolicyStore(pdir)
    good = store.scan().policies
    write(f, POLICY.format(name="a", severity=11))
    r = store.scan()
    assert not r.changed
    assert r.policies == good  # the last good version stays in force
    (rej,) = r.rejections
    assert rej.keeping_last_good and f"{f}:9:" in rej.reason and "spec.severity" in rej.reason
    write(f, POLICY.format(name="a", severity=6))
    r = store.scan()
    assert r.changed and not r.rejections and r.policies != good


def test_half_written_file_is_rejected_until_complete(pdir):
    f = pdir / "a.yaml"
    text = POLICY.format(name="a", severity=5)
    write(f, text[: len(text) // 2])
    store = PolicyStore(pdir)
    r = store.scan()
    assert names(r) == [] and len(r.rejections) == 1 and not r.rejections[0].keeping_last_good
    write(f, text)
    assert names(store.scan()) == ["a"]


def test_group_or_world_writable_file_is_refused_and_last_good_kept(pdir):
    f = pdir / "a.yaml"
    write(f, POLICY.format(name="a", severity=5))
    store = PolicyStore(pdir)
    assert names(store.scan()) == ["a"]
    os.chmod(f, 0o666)  # same text, new mode: must be re-checked
    r = store.scan()
    assert names(r) == ["a"]
    assert "writable by group or others (mode 0666): refused" in r.rejections[0].reason
    write(pdir / "b.yaml", POLICY.format(name="b", severity=5), mode=0o620)
    r = store.scan()
    assert names(r) == ["a"]
    assert any("b.yaml" in x.reason and "mode 0620" in x.reason for x in r.rejections)


def test_file_not_owned_by_root_is_refused(pdir):
    write(pdir / "a.yaml", POLICY.format(name="a", severity=5))
    os.chown(pdir / "a.yaml", 65534, 65534)
    r = PolicyStore(pdir).scan()
    assert names(r) == [] and "owned by uid 65534, not root" in r.rejections[0].reason


def test_unsafe_directory_changes_nothing(pdir):
    write(pdir / "a.yaml", POLICY.format(name="a", severity=5))
    store = PolicyStore(pdir)
    assert names(store.scan()) == ["a"]
    (pdir / "a.yaml").unlink()
    os.chmod(pdir, 0o777)
    r = store.scan()
    assert names(r) == ["a"] and "writable by group or others" in store.dir_problem


def test_symlink_leaving_the_directory_is_refused(pdir, tmp_path):
    outside = tmp_path / "outside.yaml"
    write(outside, POLICY.format(name="evil", severity=5))
    (pdir / "evil.yaml").symlink_to(outside)
    write(pdir / "real.yaml", POLICY.format(name="inner", severity=5))
    (pdir / "alias.yaml").symlink_to("real.yaml")  # inside the directory: fine
    r = PolicyStore(pdir).scan()
    assert "evil" not in names(r) and "inner" in names(r)
    assert any("outside the policy directory" in x.reason for x in r.rejections)


def test_duplicate_name_older_file_wins(pdir):
    write(pdir / "b.yaml", POLICY.format(name="dup", severity=5))
    store = PolicyStore(pdir)
    first = store.scan().policies
    write(pdir / "a.yaml", POLICY.format(name="dup", severity=7))  # sorts first, but newer
    r = store.scan()
    assert r.policies == first
    (rej,) = r.rejections
    assert str(pdir / "b.yaml") in rej.reason and str(pdir / "a.yaml") in rej.reason
