"""`karmor-host policy validate|show|translate`: check policy files, see what they compile to here
and what an enforcer would load for them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from karmor_host import config as config_mod
from karmor_host.cli import main
from karmor_host.errors import ConfigError, Problem
from karmor_host.policy import HostIdentity, LoadResult, compile_policies, load_paths
from karmor_host.policy.netpolicy import Direction, NetRule, NetRuleSet, compile_network, host_policies
from karmor_host.policy.ruleset import Category, PolicyInfo, Posture, Rule, RuleSet, Source

_POSTURES = click.Choice([p.value for p in Posture])


@main.group()
def policy() -> None:
    """Validate and inspect KubeArmorHostPolicy and KubeArmorNetworkPolicy files."""


def _summary(result: LoadResult) -> str:
    files = len(result.files)
    invalid = sum(1 for f in result.files if not f.valid)
    warnings = len(result.problems) - len(result.errors)
    return (f"{files} file(s), {invalid} invalid; {len(result.errors)} error(s), "
            f"{warnings} warning(s)")


def _validate_doc(result: LoadResult) -> dict[str, Any]:
    return {
        "valid": result.ok,
        "errors": len(result.errors),
        "warnings": len(result.problems) - len(result.errors),
        "files": [
            {
                "file": f.file,
                "valid": f.valid,
                "policies": [p.name for p in f.policies],
                "problems": [p.as_dict() for p in f.problems],
            }
            for f in result.files
        ],
    }


@policy.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def validate_cmd(paths: Sequence[Path], as_json: bool) -> None:
    """Check policy files (directories: their *.yaml and *.yml files).

    Prints one `file:line:col: field: message` line per problem. Exit status 0 when there is
    no error (warnings alone are fine), 1 otherwise.
    """
    result = load_paths(paths)
    if as_json:
        click.echo(json.dumps(_validate_doc(result), indent=2))
    else:
        for p in result.problems:
            click.echo(str(p))
        click.echo(_summary(result), err=True)
    sys.exit(0 if result.ok else 1)


# --- show ------------------------------------------------------------------------------------

def _labels(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r} is not KEY=VALUE")
        out[key] = value
    return out


def _source_text(s: Source) -> str:
    text = s.path + (" (recursive)" if s.recursive else "")
    return text if s.original == s.path else f"{text} (from {s.original})"


def _sources_text(r: Rule, shown: int = 2) -> str:
    """A table cell: long fromSource lists are cut short (--json has them all)."""
    if not r.sources:
        return "-"
    texts = [_source_text(s) for s in r.sources]
    if len(texts) > shown + 1:
        texts = texts[:shown] + [f"... (+{len(texts) - shown} more)"]
    return ", ".join(texts)


def _target_text(r: Rule) -> str:
    return r.target if r.original == r.target else f"{r.target} (from {r.original})"


def _flags(r: Rule) -> list[str]:
    flags = [name for name, on in (("recursive", r.recursive), ("readOnly", r.read_only),
                                   ("ownerOnly", r.owner_only)) if on]
    if r.syscall:
        flags.insert(0, f"syscall={r.syscall}")
    return flags


def _rule_dict(r: Rule) -> dict[str, Any]:
    return {
        "id": r.id, "policy": r.policy, "file": r.file, "line": r.line,
        "operation": r.operation.value, "kind": r.kind.value, "target": r.target,
        "original": r.original, "action": r.action.value, "severity": r.severity,
        "tags": list(r.tags), "message": r.message,
        "sources": [{"path": s.path, "original": s.original, "isDir": s.is_dir,
                     "recursive": s.recursive} for s in r.sources],
        "recursive": r.recursive, "readOnly": r.read_only, "ownerOnly": r.owner_only,
        "syscall": r.syscall,
    }


def _show_doc(rs: RuleSet, identity: HostIdentity, problems: Sequence[Problem]) -> dict[str, Any]:
    return {
        "host": {"hostname": identity.hostname, "labels": dict(sorted(identity.labels.items()))},
        "rules": [_rule_dict(r) for r in rs.rules],
        "policies": [
            {"name": p.name, "file": p.file, "applies": p.applies, "reason": p.reason,
             "ruleIds": list(p.rule_ids)}
            for p in rs.policies
        ],
        "whitelists": sorted(c.value for c in rs.whitelists),
        "postures": {c.value: rs.postures[c].value for c in Category},
        "conflicts": [{"kept": c.kept, "dropped": c.dropped, "reason": c.reason}
                      for c in rs.conflicts],
        "problems": [p.as_dict() for p in problems],
    }


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _echo_rules(title: str, rows: list[list[str]], elsewhere_title: str, policies: Sequence[PolicyInfo]) -> None:
    """A rule table, then the policies whose nodeSelector left them out, with the reason."""
    click.echo(f"\n{title}")
    for line in _table(rows):
        click.echo(line)
    elsewhere = [p for p in policies if not p.applies]
    if elsewhere:
        click.echo(f"\n{elsewhere_title} ({len(elsewhere)}):")
        for p in elsewhere:
            click.echo(f"  {p.name} ({p.file}): {p.reason}")


def _show_text(rs: RuleSet, identity: HostIdentity) -> None:
    click.echo(f"host: {identity.hostname}")
    header = ["ID", "POLICY", "ACTION", "OPERATION", "TARGET", "SOURCES", "FLAGS", "SEVERITY"]
    rows = [header] + [
        [str(r.id), r.policy, r.action.value, r.operation.value, _target_text(r),
         _sources_text(r), ",".join(_flags(r)) or "-",
         str(r.severity)]
        for r in rs.rules
    ]
    _echo_rules(f"rules ({len(rs.rules)}):", rows, "not for this host", rs.policies)
    click.echo("\npostures:")
    for c in Category:
        kind = "whitelist" if c in rs.whitelists else "no Allow rules"
        click.echo(f"  {c.value}: {rs.postures[c].value} ({kind})")
    if rs.conflicts:
        click.echo(f"\nconflicts ({len(rs.conflicts)}):")
        for c in rs.conflicts:
            click.echo(f"  kept {c.kept}, dropped {c.dropped}: {c.reason}")


def _net_rule_dict(r: NetRule) -> dict[str, Any]:
    return {
        "id": r.id, "policy": r.policy, "file": r.file, "line": r.line, "field": r.field,
        "direction": r.direction.value, "action": r.action.value, "severity": r.severity,
        "tags": list(r.tags), "message": r.message, "peers": list(r.peers), "ifaces": list(r.ifaces),
        "ports": [{"protocol": p.protocol.value, "port": p.port, "endPort": p.end_port, "name": p.name}
                  for p in r.ports],
    }


def _net_doc(net: NetRuleSet) -> dict[str, Any]:
    return {
        "rules": [_net_rule_dict(r) for r in net.rules],
        "policies": [{"name": p.name, "file": p.file, "applies": p.applies, "reason": p.reason,
                      "ruleIds": list(p.rule_ids)} for p in net.policies],
        "whitelists": sorted(d.value for d in net.whitelists),
        "posture": net.posture.value,
    }


def _show_network(net: NetRuleSet) -> None:
    """The firewall rules in evaluation order (the first rule a new flow matches decides)."""
    if not net.policies:
        return
    header = ["ID", "POLICY", "DIRECTION", "ACTION", "PEERS", "IFACES", "PORTS", "SEVERITY"]
    rows = [header] + [
        [str(r.id), r.policy, r.direction.value, r.action.value, r.peers_text(),
         ",".join(r.ifaces) or "any", r.ports_text(), str(r.severity)]
        for r in net.rules
    ]
    _echo_rules(f"network firewall rules ({len(net.rules)}), in evaluation order:", rows,
                "network policies not for this host", net.policies)
    click.echo(f"\nnetwork posture: {net.posture.value}")
    for d in Direction:
        if d in net.whitelists:
            click.echo(f"  {d.value}: whitelist (new flows no rule matches: {net.posture.value})")
        else:
            click.echo(f"  {d.value}: no Allow rules (new flows no rule matches pass)")


# The options `show` and `translate` share: which host to compile for, with which default postures.
_HOST_OPTIONS = (
    click.option("--hostname", help="Compile for this host name instead of this machine's."),
    click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", callback=_labels,
                 help="A host label for nodeSelector matching (repeatable)."),
    click.option("--config", "config_path", type=click.Path(path_type=Path),
                 help="Take the host name and default postures from this agent config file."),
    click.option("--file-posture", type=_POSTURES, help="Default file posture (audit)."),
    click.option("--network-posture", type=_POSTURES, help="Default network posture (audit)."),
    click.option("--capabilities-posture", type=_POSTURES, help="Default capabilities posture (audit)."),
)


def _host_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_HOST_OPTIONS):  # decorators apply bottom-up; keep the help's order
        command = option(command)
    return command


def _host_postures(config_path: Path | None, hostname: str | None, file_posture: str | None,
                   network_posture: str | None, capabilities_posture: str | None,
                   ) -> tuple[dict[Category, Posture], str | None]:
    """The default postures and host name: audit, then the config file's, then the options'."""
    postures = {c: Posture.AUDIT for c in Category}
    if config_path is not None:
        try:
            cfg = config_mod.load(config_path)
        except ConfigError as exc:
            click.echo(exc.message, err=True)
            sys.exit(exc.code)
        postures.update(cfg.postures)
        hostname = hostname or cfg.hostname or None
    given = {Category.FILE: file_posture, Category.NETWORK: network_posture,
             Category.CAPABILITIES: capabilities_posture}
    postures.update({c: Posture(v) for c, v in given.items() if v})
    return postures, hostname


@policy.command("show")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_host_options
def show_cmd(paths: Sequence[Path], as_json: bool, hostname: str | None, labels: dict[str, str],
             config_path: Path | None, file_posture: str | None, network_posture: str | None,
             capabilities_posture: str | None) -> None:
    """Show what the policies compile to on this host.

    Rule ids, canonical targets, sources and flags; the policies that are not for this host
    and why; whitelists, postures and conflicts.

    Invalid files are reported on stderr and left out; the exit status is then 1.
    """
    postures, hostname = _host_postures(config_path, hostname, file_posture, network_posture, capabilities_posture)
    result = load_paths(paths)
    identity = HostIdentity.detect(hostname=hostname, labels=labels)
    rs = compile_policies(host_policies(result.policies), identity, postures)
    net = compile_network(result.policies, identity, postures[Category.NETWORK])
    if as_json:
        doc = _show_doc(rs, identity, result.problems)
        doc["network"] = _net_doc(net)
        click.echo(json.dumps(doc, indent=2))
    else:
        for p in result.problems:
            click.echo(str(p), err=True)
        _show_text(rs, identity)
        _show_network(net)
    sys.exit(0 if result.ok else 1)


# --- translate ---------------------------------------------------------------------------------

def _apparmor_text(rs: RuleSet) -> str:
    import os
    import shutil

    from karmor_host.enforce.apparmor.render import DEFAULT_LOADER, render  # only when asked for

    loader = shutil.which("apparmor_parser", path="/usr/sbin:/sbin") or DEFAULT_LOADER
    return render(rs, loader=os.path.realpath(loader)).text()


def _selinux_text(rs: RuleSet) -> str:
    from karmor_host.enforce.selinux.translate import text  # setools only when asked for
    from karmor_host.errors import EnforcerError

    try:
        return text(rs)
    except EnforcerError as exc:
        raise click.ClickException(exc.message) from exc


# Enforcer name -> the text that enforcer would load for a rule set. Closed, like the
# enforcer registry: another enforcer adds one entry (its own pure render/plan function).
TRANSLATORS: dict[str, Callable[[RuleSet], str]] = {
    "apparmor": _apparmor_text,
    "selinux": _selinux_text,
}


@policy.command("translate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--enforcer", required=True, type=click.Choice(sorted(TRANSLATORS)),
              help="The enforcer whose kernel policy to print.")
@_host_options
def translate_cmd(paths: Sequence[Path], enforcer: str, hostname: str | None, labels: dict[str, str],
                  config_path: Path | None, file_posture: str | None, network_posture: str | None,
                  capabilities_posture: str | None) -> None:
    """Print what an enforcer would load for these policies on this host.

    `--enforcer apparmor`: the AppArmor profiles, as one file `apparmor_parser` accepts
    (`... | apparmor_parser -Q` checks it), with comments naming each rule id and saying how
    the rules AppArmor cannot carry are reported instead.

    Invalid files are reported on stderr and left out; the exit status is then 1.
    """
    postures, hostname = _host_postures(config_path, hostname, file_posture, network_posture, capabilities_posture)
    result = load_paths(paths)
    for p in result.problems:
        click.echo(str(p), err=True)
    rs = compile_policies(host_policies(result.policies), HostIdentity.detect(hostname=hostname, labels=labels),
                          postures)
    click.echo(TRANSLATORS[enforcer](rs), nl=False)
    sys.exit(0 if result.ok else 1)
