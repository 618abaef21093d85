"""`karmor-host run` (the daemon systemd starts) and `karmor-host status`."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import click

from karmor_host import config as config_mod
from karmor_host import control, log
from karmor_host.cli import main
from karmor_host.errors import KarmorError
from karmor_host.paths import default_paths

DEFAULT_CONFIG = Path("/etc/karmor/karmor-host.yaml")


@main.command("run")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help=f"Configuration file [default: {DEFAULT_CONFIG}, defaults if absent].")
@click.option("--policy-dir", type=click.Path(path_type=Path), default=None,
              help="Policy directory (overrides the configuration's policyDir).")
@click.option("--cleanup", is_flag=True,
              help="Remove the enforcement a stopped agent left in the kernel (pinned BPF-LSM programs "
                   "and maps) and exit. Stop the agent first.")
def run_cmd(config_path: Path | None, policy_dir: Path | None, cleanup: bool) -> None:
    """Run the agent in the foreground until SIGTERM/SIGINT; SIGHUP reloads."""
    if cleanup:
        _cleanup()
        return
    _exempt_early()
    try:
        if config_path is None:
            cfg = config_mod.load(DEFAULT_CONFIG, missing_ok=True)
        else:
            cfg = config_mod.load(config_path)
    except KarmorError as exc:
        click.echo(f"karmor-host: {exc.message}", err=True)
        sys.exit(exc.code)
    if policy_dir is not None:
        cfg = replace(cfg, policy_dir=policy_dir.resolve())
    from karmor_host.agent import Agent  # heavy imports only for the daemon
    from karmor_host.alerts.sinks.journald import JournalLogProcessor

    # Own logs go to the journal with structured fields; under systemd stderr already is the
    # journal, so the plain copy is dropped there to avoid every line appearing twice.
    extra = ()
    if cfg.journald.enabled:
        extra = (JournalLogProcessor(passthrough=not log.stderr_is_journal()),)
    log.configure(level=cfg.log_level, extra_processors=extra)

    try:
        sys.exit(Agent(cfg, default_paths()).run())
    except KarmorError as exc:
        log.get("karmor.cli").error("start_failed", error=exc.message)
        sys.exit(exc.code)


def _exempt_early() -> None:
    """Under BPF-LSM programs an earlier run pinned, exempt this process before it reads its
    configuration and policies (the enforcer does it again once chosen)."""
    from karmor_host.enforce.bpflsm.enforcer import exempt_early

    exempt_early(default_paths())


def _cleanup() -> None:
    from karmor_host.enforce import registry

    paths = default_paths()
    doc, state = control.read_status(paths.status_file)
    if doc is not None and state == "running":
        click.echo(f"karmor-host: the agent is running (pid {doc['pid']}): stop it first", err=True)
        sys.exit(1)
    try:
        removed = registry.cleanup(paths)
    except OSError as exc:
        click.echo(f"karmor-host: cleanup failed: {exc}", err=True)
        sys.exit(4)
    for path in removed:
        click.echo(f"removed {path}")
    click.echo(f"karmor-host: {len(removed)} pinned objects removed; nothing is enforced until the agent starts")


def _age(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the agent's status document as JSON.")
def status_cmd(as_json: bool) -> None:
    """Show the running agent's state: enforcer, policies, alerts, drops."""
    doc, state = control.read_status(default_paths().status_file)
    if doc is None:
        click.echo(f"karmor-host: {state}", err=True)
        sys.exit(3)
    doc["state"] = state
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        sys.exit(0 if state == "running" else 3)
    up = _age(time.time() - doc["started"]) if state == "running" else "not running (last state shown)"
    click.echo(f"karmor-host {doc['version']}  pid {doc['pid']}  {state}  uptime {up}")
    click.echo(f"enforcer:  {doc['enforcer']['name']}  ({doc['enforcer']['reason']})")
    ap = doc["apply"]
    click.echo(f"applied:   generation {ap['generation']}, {ap['rules']} rules, "
               f"{ap['latency_ms']} ms" + (f", ERROR: {ap['error']}" if ap["error"] else ""))
    if ap["whitelists"]:
        click.echo(f"whitelists: {', '.join(ap['whitelists'])} (postures: "
                   + ", ".join(f"{k}={v}" for k, v in sorted(ap["postures"].items())) + ")")
    pol = doc["policies"]
    alerts = doc.get("alerts", {}).get("per_policy", {})
    click.echo(f"policies in {doc['policy_dir']}:")
    if doc.get("policy_dir_problem"):
        click.echo(f"  DIRECTORY REFUSED: {doc['policy_dir_problem']}")
    for p in pol["active"]:
        modes: dict[str, int] = {}
        for r in p["rules"]:
            modes[r["mode"]] = modes.get(r["mode"], 0) + 1
        how = ", ".join(f"{n} {m}" for m, n in sorted(modes.items())) or "no rules"
        click.echo(f"  active     {p['name']:<32} {how}; alerts {alerts.get(p['name'], 0)}")
    for p in pol["not_for_this_host"]:
        click.echo(f"  other host {p['name']:<32} {p['reason']}")
    for r in pol["rejected"]:
        keep = " (last good version kept)" if r["keeping_last_good"] else ""
        click.echo(f"  REJECTED   {r['file']}: {r['reason']}{keep}")
    for name, c in sorted(doc.get("alerts", {}).get("sinks", {}).items()):
        extra = "".join(f", {k} {c[k]}" for k in ("spooled", "dropped", "duplicates") if k in c)
        conn = "" if "connected" not in c else (", connected" if c["connected"] else ", NOT CONNECTED")
        err = f" (last error: {c['last_error']})" if c.get("last_error") else ""
        click.echo(f"sink:      {name}: sent {c.get('sent', 0)}, failed {c.get('failed', 0)}{extra}{conn}{err}")
    fw = doc.get("firewall") or {}
    if fw.get("table") or fw.get("error"):
        logged = sum(fw.get("alerts", {}).get("logged", {}).values())
        suppressed = sum(fw.get("alerts", {}).get("suppressed", {}).values())
        click.echo(f"firewall:  table {fw.get('table') or '-'}, {fw.get('rules', 0)} rules "
                   f"(posture {fw.get('posture', '?')}), alerts {logged}, suppressed {suppressed}"
                   + (f", ERROR: {fw['error']}" if fw.get("error") else ""))
    drops = doc.get("monitor", {}).get("drops", {})
    stats = doc.get("alerts", {})
    click.echo("drops:     " + (", ".join(f"{k}={v}" for k, v in sorted(drops.items())) or "none")
               + (f"; alerts suppressed={stats.get('suppressed', 0)}" if stats else ""))
    sys.exit(0 if state == "running" else 3)
