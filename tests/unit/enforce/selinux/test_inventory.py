"""Scanning what a rule set names: kinds, original contexts, labelled mounts, directory trees."""

from __future__ import annotations

import os

from karmor_host.enforce.selinux import inventory
from karmor_host.enforce.selinux.facts import MISSING, Wanted
from karmor_host.enforce.selinux.inventory import Mount, mount_of, mounts, scan

MOUNTINFO = """\
22 1 0:21 / / ro,relatime - 9p /dev/root ro,trans=virtio
25 22 0:23 / /tmp rw,relatime - tmpfs tmpfs rw,seclabel
26 22 0:24 / /mnt/my\\040disk rw - ext4 /dev/loop0 rw,seclabel,errors=remount-ro
"""


class FakeLabels:
    def __init__(self, enabled=True, current=None, defaults=None):
        self.enabled = enabled
        self._current = current or {}
        self._defaults = defaults or {}

    def current(self, path):
        return self._current.get(path, "system_u:object_r:tmpfs_t:s0")

    def default(self, path, mode):
        return self._defaults.get(path, "")


def test_mountinfo_longest_prefix_and_seclabel(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    table = mounts(info)
    assert [m.point for m in table] == ["/mnt/my disk", "/tmp", "/"]
    assert mount_of("/tmp/x/y", table) == Mount("/tmp", "tmpfs", True)
    assert mount_of("/tmpfoo", table).point == "/"
    assert mount_of("/mnt/my disk/f", table).seclabel
    assert not mount_of("/usr/bin/cat", table).seclabel


def test_scan_reads_kinds_contexts_and_labelability(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("a")
    (tmp_path / "d" / "s").mkdir()
    (tmp_path / "d" / "s" / "b").write_text("b")
    os.symlink("f", tmp_path / "l")
    table = [Mount(str(tmp_path), "tmpfs", True), Mount("/", "9p", False)]
    want = Wanted(frozenset({str(tmp_path / "f"), str(tmp_path / "l"), str(tmp_path / "nope"), "/usr/bin/true"}),
                  frozenset({(f"{tmp_path}/d/", True), (f"{tmp_path}/d/", False)}))
    inv = scan(want, {}, FakeLabels(), table)
    f = inv.get(str(tmp_path / "f"))
    assert f.kind == "file" and f.labelable and f.type == "tmpfs_t" and f.ino == os.lstat(tmp_path / "f").st_ino
    assert inv.get(str(tmp_path / "l")).kind == "lnk_file"
    assert inv.get(str(tmp_path / "nope")).kind == MISSING
    true = inv.get("/usr/bin/true")
    assert not true.labelable and "9p on / keeps no SELinux labels" in true.why
    deep = inv.trees[(f"{tmp_path}/d/", True)]
    assert deep.paths == tuple(sorted(str(p) for p in (tmp_path / "d" / "a", tmp_path / "d" / "s",
                                                       tmp_path / "d" / "s" / "b")))
    flat = inv.trees[(f"{tmp_path}/d/", False)]
    assert str(tmp_path / "d" / "s" / "b") not in flat.paths
    assert inv.get(str(tmp_path / "d")).kind == "dir"


def test_recorded_originals_win_and_karmor_labels_without_a_record_fall_back(tmp_path):
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    table = [Mount(str(tmp_path), "ext4", True)]
    labels = FakeLabels(current={str(tmp_path / "a"): "system_u:object_r:karmor_0123456789_t:s0",
                                 str(tmp_path / "b"): "system_u:object_r:karmor_0123456789_t:s0"},
                        defaults={str(tmp_path / "b"): "system_u:object_r:etc_t:s0"})
    want = Wanted(frozenset({str(tmp_path / "a"), str(tmp_path / "b")}))
    inv = scan(want, {str(tmp_path / "a"): "system_u:object_r:bin_t:s0"}, labels, table)
    assert inv.get(str(tmp_path / "a")).context == "system_u:object_r:bin_t:s0"
    b = inv.get(str(tmp_path / "b"))
    assert b.context == "system_u:object_r:etc_t:s0" and "original unknown" in b.why


def test_without_selinux_contexts_come_from_file_contexts(tmp_path):
    (tmp_path / "a").write_text("a")
    want = Wanted(frozenset({str(tmp_path / "a"), str(tmp_path / "nofc")}))
    (tmp_path / "nofc").write_text("")
    labels = FakeLabels(enabled=False, defaults={str(tmp_path / "a"): "system_u:object_r:etc_t:s0"})
    inv = scan(want, {}, labels, [])
    a = inv.get(str(tmp_path / "a"))
    assert a.labelable and a.type == "etc_t" and "file_contexts" in a.why
    assert not inv.get(str(tmp_path / "nofc")).labelable


def test_tree_scan_stops_at_its_limit(tmp_path):
    for i in range(12):
        (tmp_path / f"f{i}").write_text("")
    inv = scan(Wanted(trees=frozenset({(f"{tmp_path}/", True)})), {}, FakeLabels(),
               [Mount(str(tmp_path), "tmpfs", True)], limit=10)
    tree = inv.trees[(f"{tmp_path}/", True)]
    assert tree.truncated and len(tree.paths) == 10


def test_kind_of():
    assert inventory.kind_of(0o100644) == "file" and inventory.kind_of(0o040755) == "dir"
    assert inventory.kind_of(0o020666) == "chr_file" and inventory.kind_of(0o010644) == "fifo_file"


def test_a_file_created_in_a_relabelled_directory_inherits_its_original(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "new").write_text("")
    karmor = "system_u:object_r:karmor_0123456789_t:s0"
    labels = FakeLabels(current={str(tmp_path / "d" / "new"): karmor})
    inv = scan(Wanted(frozenset({str(tmp_path / "d" / "new")})), {str(tmp_path / "d"): "system_u:object_r:etc_t:s0"},
               labels, [Mount(str(tmp_path), "tmpfs", True)])
    node = inv.get(str(tmp_path / "d" / "new"))
    assert node.context == "system_u:object_r:etc_t:s0" and "created under" in node.why
