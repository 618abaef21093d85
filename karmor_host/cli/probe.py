"""`karmor-host probe`: what this kernel offers, and which enforcer `auto` would choose."""

from __future__ import annotations

import json

import click

from karmor_host.cli import main
from karmor_host.enforce.registry import IMPLEMENTED
from karmor_host.kernel.probe import choose, probe
from karmor_host.paths import default_bpf_object_dir


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


@main.command("probe")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def probe_cmd(as_json: bool) -> None:
    """Report kernel version, BTF, active LSMs, BPF-LSM/AppArmor/SELinux status and the enforcer choice."""
    facts = probe(default_bpf_object_dir())
    choice = choose(facts, "auto", IMPLEMENTED)
    if as_json:
        doc = facts.as_dict()
        doc["auto"] = {"enforcer": choice.enforcer, "reason": choice.reason}
        doc["implemented"] = sorted(IMPLEMENTED)
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    rows = [
        ("kernel", facts.kernel),
        ("BTF", _yes(facts.btf) + (" (/sys/kernel/btf/vmlinux)" if facts.btf else "")),
        ("active LSMs", ",".join(facts.lsms) or "unknown"),
        ("lockdown", facts.lockdown),
        ("BPF-LSM", ("loadable: " if facts.bpflsm.usable else "not loadable: ") + facts.bpflsm.detail),
        ("AppArmor", facts.apparmor.detail),
        ("SELinux", facts.selinux.detail),
        ("cgroup v2", facts.cgroup_v2 or "not mounted"),
        ("bpffs", facts.bpffs or "not mounted"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
    for note in facts.notes:
        click.echo(f"{'note':<{width}}  {note}")
    click.echo(f"{'auto':<{width}}  {choice.enforcer}: {choice.reason}")
