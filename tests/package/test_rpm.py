"""The .rpm as built by `make rpm` (rpmbuild on Debian): files, dependencies, scriptlets.
The same files as the .deb, at Fedora's paths; the scriptlets are Fedora's systemd macros
written out (Debian's rpm has no systemd-rpm-macros)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from karmor_host import __version__
from tests.package import vm

REPO = vm.REPO


def _q(rpm: Path, *args: str) -> str:
    return subprocess.run(["rpm", "-qp", *args, str(rpm)], check=True, capture_output=True, text=True).stdout


def test_name(rpm: Path) -> None:
    assert re.fullmatch(rf"karmor-host-{re.escape(__version__)}-\d+\.x86_64\.rpm", rpm.name), rpm.name


def test_files(rpm: Path) -> None:
    files = set(_q(rpm, "-l").split())
    for path in ("/usr/bin/karmor-host", "/usr/lib/karmor-host/bpf/monitor.bpf.o",
                 "/usr/lib/karmor-host/bpf/lsm_probe.bpf.o", "/usr/lib/karmor-host/remove-kernel-state",
                 "/usr/lib/karmor-host/python/karmor_host/agent.py",
                 "/usr/lib/systemd/system/karmor-host.service",
                 "/usr/lib/systemd/system-generators/karmor-host-generator",
                 "/usr/lib/systemd/system-preset/80-karmor-host.preset",
                 "/etc/karmor/karmor-host.yaml", "/etc/karmor/policies", "/etc/karmor/policies/README",
                 "/usr/share/man/man8/karmor-host.8.gz", "/usr/share/doc/karmor-host/packaging.md",
                 "/usr/share/doc/karmor-host/examples/audit-shadow-reads.yaml"):
        assert path in files, f"{path} missing from the .rpm"
    assert not [f for f in files if f.startswith("/etc/karmor/policies/") and f.endswith((".yaml", ".yml"))]
    assert not [f for f in files if "/bpf/bench" in f or "__pycache__" in f]


def test_same_payload_as_the_deb(rpm: Path, deb: Path) -> None:
    """Apart from where Python code and the unit live, both packages ship the same files."""
    def norm(path: str) -> str:
        path = path.replace("/usr/lib/python3/dist-packages/", "/usr/lib/karmor-host/python/")
        return re.sub(r"^/lib/systemd/", "/usr/lib/systemd/", path)

    deb_files = set()
    for line in subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True,
                               text=True).stdout.splitlines():
        parts = line.split()
        if not parts[0].startswith("d"):
            deb_files.add(norm(parts[5].removeprefix(".")))
    rpm_files = {name for name, mode in (line.split() for line in
                 _q(rpm, "--qf", "[%{FILENAMES} %{FILEMODES:perms}\n]").splitlines()) if not mode.startswith("d")}
    # Debian-only: lintian overrides, the compressed changelog, the wheel's dist-info metadata;
    # rpm-only: the systemd preset (Fedora applies presets; Debian enables in postinst)
    only_deb = {f for f in deb_files - rpm_files
                if "/lintian/" not in f and not f.endswith("changelog.gz") and ".dist-info/" not in f}
    only_rpm = {f for f in rpm_files - deb_files if not f.endswith(".preset")}
    assert not only_deb, f"in the .deb but not the .rpm: {sorted(only_deb)}"
    assert not only_rpm, f"in the .rpm but not the .deb: {sorted(only_rpm)}"


def test_config_files(rpm: Path) -> None:
    flags = dict(line.split() for line in _q(rpm, "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]").splitlines()
                 if len(line.split()) == 2)
    assert "c" in flags["/etc/karmor/karmor-host.yaml"] and "n" in flags["/etc/karmor/karmor-host.yaml"], \
        "karmor-host.yaml must be %config(noreplace)"
    modes = dict(line.split() for line in _q(rpm, "--qf", "[%{FILENAMES} %{FILEMODES:perms}\n]").splitlines())
    assert modes["/etc/karmor/policies"] == "drwxr-x---"


def test_requires(rpm: Path) -> None:
    requires = {re.split(r"[ (]", line)[0] for line in _q(rpm, "--requires").splitlines()}
    for name in ("python3-click", "python3-structlog", "python3-watchdog", "python3-msgpack", "python3-pyroute2",
                 "python3-pyyaml", "python3-systemd", "python3-libselinux", "python3-nftables", "libbpf", "python3",
                 "systemd", "policycoreutils", "secilc", "python3-setools"):  # the last three: the SELinux enforcer
        assert name in requires, f"Requires: {name} missing"
    # no Debian package names leaked into the rpm
    assert not {r for r in requires if r in ("python3-yaml", "libbpf1", "python3-selinux")}


def test_scriptlets(rpm: Path) -> None:
    scripts = _q(rpm, "--scripts")
    post = scripts.split("postinstall scriptlet")[1].split("scriptlet (using")[0]
    preun = scripts.split("preuninstall scriptlet")[1]
    postun = scripts.split("postuninstall scriptlet")[1]
    # %systemd_post: presets on first install (ours enables the unit); started like the .deb does
    assert "systemctl --no-reload preset karmor-host.service" in post and "systemctl start karmor-host.service" in post
    # %systemd_preun: disable and stop on erase, then the kernel state goes
    assert "systemctl --no-reload disable --now karmor-host.service" in preun
    assert "/usr/lib/karmor-host/remove-kernel-state" in preun
    # %systemd_postun_with_restart: restart on upgrade; erase removes the state directory
    assert "systemctl try-restart karmor-host.service" in postun and "rm -rf /var/lib/karmor" in postun
    for body in scripts.split("scriptlet (using /bin/sh):")[1:]:
        body = re.split(r"^\w+ scriptlet", body, flags=re.M)[0]
        subprocess.run(["sh", "-n"], input=body, text=True, check=True)
