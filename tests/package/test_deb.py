"""The .deb as built by `make deb`: contents, metadata, maintainer scripts, lintian.
(Installing it for real is test_guest.py.)"""

from __future__ import annotations

import gzip
import re
import subprocess
import tempfile
from pathlib import Path

import click
import pytest

from karmor_host import __version__
from karmor_host.cli import main as cli_main
from tests.package import vm

REPO = vm.REPO


def _contents(deb: Path) -> dict[str, tuple[str, str]]:
    """path -> (mode string, owner/group) for every entry of the data archive."""
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
    entries = {}
    for line in out.splitlines():
        parts = line.split()
        path = parts[5].removeprefix(".")
        entries[path.rstrip("/") or "/"] = (parts[0], parts[1])
    return entries


def _control_file(deb: Path, name: str) -> str:
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["dpkg-deb", "-e", str(deb), d], check=True)
        p = Path(d) / name
        return p.read_text() if p.exists() else ""


def test_version_and_name(deb: Path) -> None:
    assert deb.name == f"karmor-host_{__version__}_amd64.deb"
    assert vm.deb_field(deb, "Version").strip() == __version__
    assert vm.deb_field(deb, "Architecture").strip() == "amd64"


def test_versions_agree() -> None:
    """debian/changelog, rpm/karmor-host.spec and karmor_host.__version__ name one version."""
    changelog = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    spec = (REPO / "rpm" / "karmor-host.spec").read_text()
    assert re.match(rf"karmor-host \({re.escape(__version__)}\) ", changelog), changelog
    assert re.search(rf"^Version:\s+{re.escape(__version__)}$", spec, re.M), "rpm spec Version"


def test_dependencies(deb: Path) -> None:
    def names(field: str) -> set[str]:
        value = vm.deb_field(deb, field).strip()
        return {re.split(r"[ :(]", alt.strip())[0] for alt in value.replace("|", ",").split(",") if alt.strip()}

    assert {"python3-click", "python3-structlog", "python3-watchdog", "python3-msgpack", "python3-pyroute2",
            "python3-yaml", "python3-systemd", "python3-libapparmor", "python3-selinux", "python3-nftables",
            "libbpf1", "python3"} <= names("Depends")
    assert names("Recommends") == {"apparmor"}
    assert {"policycoreutils", "secilc", "python3-setools", "selinux-policy-default"} <= names("Suggests")


def test_files(deb: Path) -> None:
    c = _contents(deb)
    for path in ("/usr/bin/karmor-host", "/usr/lib/karmor-host/bpf/monitor.bpf.o",
                 "/usr/lib/karmor-host/bpf/lsm_probe.bpf.o", "/usr/lib/karmor-host/remove-kernel-state",
                 "/lib/systemd/system/karmor-host.service", "/lib/systemd/system-generators/karmor-host-generator",
                 "/etc/karmor/karmor-host.yaml", "/etc/karmor/policies/README",
                 "/usr/share/man/man8/karmor-host.8.gz", "/usr/share/doc/karmor-host/copyright",
                 "/usr/share/doc/karmor-host/packaging.md",
                 "/usr/lib/python3/dist-packages/karmor_host/agent.py"):
        assert path in c, f"{path} missing from the .deb"
    assert c["/etc/karmor/policies"] == ("drwxr-x---", "root/root")
    assert c["/usr/bin/karmor-host"][0] == "-rwxr-xr-x"
    # no active policy, only the README; examples where the docs say
    assert [p for p in c if p.startswith("/etc/karmor/policies/")] == ["/etc/karmor/policies/README"]
    examples = {Path(p).name for p in c if p.startswith("/usr/share/doc/karmor-host/examples/")}
    assert examples == {p.name for p in (REPO / "policies").glob("*.yaml")}
    # the benchmark's BPF objects are not part of the product
    assert not [p for p in c if "/bpf/bench" in p]


def test_conffiles(deb: Path) -> None:
    conffiles = _control_file(deb, "conffiles").split()
    assert "/etc/karmor/karmor-host.yaml" in conffiles


def test_bpf_objects_keep_btf(deb: Path, tmp_path: Path) -> None:
    """CO-RE needs the objects' .BTF and .BTF.ext: the package build must not strip them."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    for obj in (tmp_path / "usr/lib/karmor-host/bpf").glob("*.bpf.o"):
        sections = subprocess.run(["readelf", "-S", "-W", str(obj)], check=True, capture_output=True,
                                  text=True).stdout
        assert ".BTF " in sections and ".BTF.ext" in sections, f"{obj.name} lost its BTF"


def test_maintainer_scripts(deb: Path) -> None:
    postinst = _control_file(deb, "postinst")
    prerm = _control_file(deb, "prerm")
    postrm = _control_file(deb, "postrm")
    # enable + start on install, restart on upgrade (debhelper's systemd snippets)
    assert "deb-systemd-helper enable 'karmor-host.service'" in postinst
    assert "_dh_action=restart" in postinst and "_dh_action=start" in postinst
    # stop on remove, then the kernel state goes
    assert "deb-systemd-invoke stop 'karmor-host.service'" in prerm
    assert prerm.index("deb-systemd-invoke stop") < prerm.index("/usr/lib/karmor-host/remove-kernel-state")
    # purge: state directory and the unit's symlinks
    assert "rm -rf /var/lib/karmor" in postrm and "deb-systemd-helper purge 'karmor-host.service'" in postrm
    for text in (postinst, prerm, postrm):
        subprocess.run(["sh", "-n"], input=text, text=True, check=True)


def test_lintian_clean(deb: Path) -> None:
    """`make deb` fails on lintian errors; warnings are not accepted either."""
    changes = deb.with_suffix(".changes")
    proc = subprocess.run(["lintian", "--fail-on", "error,warning", str(changes)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_man_page_covers_every_command(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    page = gzip.decompress((tmp_path / "usr/share/man/man8/karmor-host.8.gz").read_bytes()).decode()
    assert page.startswith(".TH KARMOR\\-HOST 8")

    def commands(group: click.Group, prefix: str) -> list[str]:
        out = []
        for name, cmd in group.commands.items():
            out.append(f"{prefix}{name}")
            if isinstance(cmd, click.Group):
                out += commands(cmd, f"{prefix}{name} ")
        return out

    for words in commands(cli_main, ""):
        assert f".SS {words.replace('-', chr(92) + '-')}" in page, f"`karmor-host {words}` missing from the man page"


@pytest.mark.parametrize("selinux", [False, True], ids=["no-selinux", "selinux"])
def test_generator(tmp_path: Path, selinux: bool) -> None:
    """karmor-host-generator adds the SELinux enforcer's drop-in only where SELinux is enabled."""
    fs = tmp_path / "selinuxfs"
    fs.mkdir()
    if selinux:
        (fs / "enforce").write_text("1")
    out = tmp_path / "normal"
    subprocess.run(["sh", str(REPO / "tools/karmor-host-generator.sh"), str(out), str(tmp_path / "early"),
                    str(tmp_path / "late")], check=True, env={"KARMOR_SELINUXFS": str(fs), "PATH": "/usr/bin:/bin"})
    dropin = out / "karmor-host.service.d" / "50-selinux-enforcer.conf"
    assert dropin.exists() == selinux
    if selinux:
        text = dropin.read_text()
        for line in ("ProtectSystem=no", "ProtectHome=no", "PrivateTmp=no", "NoNewPrivileges=no"):
            assert line in text
