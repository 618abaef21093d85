"""Canonicalisation against a temporary tree (never this host's /)."""

from __future__ import annotations

from pathlib import Path

import pytest

from karmor_host.policy import Canonicalizer, canonical


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/bin/ls").write_text("")
    (tmp_path / "bin").symlink_to("usr/bin")  # merged /usr, relative link
    (tmp_path / "lib").symlink_to("/usr/lib")  # absolute link: stays inside the root
    (tmp_path / "usr/bin/python3").symlink_to("python3.11")
    (tmp_path / "usr/bin/python3.11").write_text("")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/up").symlink_to("../usr/bin/ls")  # ".." in a link target
    (tmp_path / "etc/loop1").symlink_to("loop2")
    (tmp_path / "etc/loop2").symlink_to("loop1")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/self").symlink_to("4242")
    return tmp_path


@pytest.mark.parametrize("written,expected", [
    ("/bin/ls", "/usr/bin/ls"),
    ("/bin/", "/usr/bin/"),
    ("/bin", "/usr/bin"),
    ("/lib/x86_64-linux-gnu/", "/usr/lib/x86_64-linux-gnu/"),  # non-existent tail kept
    ("/bin/not/yet/installed", "/usr/bin/not/yet/installed"),
    ("/usr/bin/python3", "/usr/bin/python3.11"),  # the last component is resolved too
    ("/etc/up", "/usr/bin/ls"),
    ("/etc/loop1", "/etc/loop1"),  # a loop: left as written
    ("/etc/hosts", "/etc/hosts"),
    ("/proc/self/exe", "/proc/self/exe"),  # pseudo filesystems are never resolved
    ("/", "/"),
])
def test_canonical(root: Path, written: str, expected: str) -> None:
    assert canonical(written, root) == expected


def test_canonicalizer_caches_per_instance(root: Path) -> None:
    resolve = Canonicalizer(root)
    assert resolve("/bin/ls") == "/usr/bin/ls"
    (root / "bin").unlink()
    (root / "bin").mkdir()  # the tree changes under us: the same instance keeps its answer
    assert resolve("/bin/ls") == "/usr/bin/ls"
    assert Canonicalizer(root)("/bin/ls") == "/bin/ls"  # a new compile sees the new tree
