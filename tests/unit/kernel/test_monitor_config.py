"""monitor.py without a kernel: the category table and the load-time configuration."""

from __future__ import annotations

import os

import pytest

from karmor_host.errors import KernelError
from karmor_host.kernel import abi
from karmor_host.kernel.bpfobj import BpfObject
from karmor_host.kernel.monitor import CATEGORIES, CATEGORY_PROGRAMS, DEFAULT_VISIBILITY, OBJECT_NAME, build_config
from karmor_host.paths import default_bpf_object_dir


def test_every_program_in_the_object_has_exactly_one_category():
    listed = [p for progs in CATEGORY_PROGRAMS.values() for p in progs]
    assert len(listed) == len(set(listed))
    with BpfObject(default_bpf_object_dir() / OBJECT_NAME) as obj:  # open only: no root needed
        assert sorted(obj.programs) == sorted(listed)


def test_categories_are_kubearmors_and_the_default_avoids_syscall_tracepoints():
    assert CATEGORIES == ("process", "file", "network", "capabilities", "syscall")
    assert DEFAULT_VISIBILITY == {"process", "network", "capabilities"}


def test_noise_prefixes_become_directories_and_byte_prefixes():
    absent = "/no-such-karmor-dir"
    cfg = build_config(1234, 4096, ["/proc/", "/sys", absent, "/proc"])
    assert (cfg.self_tgid, cfg.wakeup_bytes) == (1234, 4096)
    assert cfg.noise_strs == 3  # duplicates and trailing slashes folded
    assert [cfg.noise_str[i].value for i in range(3)] == [b"/proc", b"/sys", absent.encode()]
    assert [cfg.noise_str_len[i] for i in range(3)] == [5, 4, len(absent)]
    st = os.stat("/proc")
    assert cfg.noise_dirs == 2  # the absent one has no (dev, ino)
    assert (cfg.noise_dir[0].dev, cfg.noise_dir[0].ino) == ((os.major(st.st_dev) << 20) | os.minor(st.st_dev),
                                                            st.st_ino)


def test_too_many_or_too_long_noise_prefixes_are_refused():
    with pytest.raises(KernelError, match="at most"):
        build_config(1, 0, [f"/p{i}" for i in range(abi.NOISE_MAX + 1)])
    with pytest.raises(KernelError, match="longer than"):
        build_config(1, 0, ["/" + "x" * abi.NOISE_STR])
