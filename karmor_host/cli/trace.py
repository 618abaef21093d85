"""`karmor-host trace`: live system events until Ctrl-C, like `karmor logs --logFilter system`.

Each event is rendered from its KubeArmor HostLog record (alerts/record.py), one line of
text or, with --json, the record itself as one JSON object per line. At exit a summary of
what was seen and what was lost goes to stderr, so stdout stays parseable.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from typing import Any

import click

from karmor_host.cli import main
from karmor_host.errors import KarmorError

OPERATIONS = ("process", "file", "network", "capabilities", "syscall")


def text_line(record: dict[str, Any]) -> str:
    """One event as a line: when, what, who, on what, how it ended."""
    who = f"{record['ProcessName'] or '?'} (pid {record['PID']}, ppid {record['PPID']}, uid {record['UID']})"
    return (f"{record['UpdatedTime']}  {record['Operation']:<12} {who}  {record['Resource']}"
            f"  [{record['Data']}]  {record['Result']}")


def _addresses() -> str:
    """The host's addresses, to read the ones in events against (via netlink)."""
    from karmor_host.kernel.netinfo import host_addresses

    return ", ".join(f"{a.ifname} {a.address}/{a.prefixlen}" for a in host_addresses() if a.ifname) or "no addresses"


@main.command("trace")
@click.option("--operation", "operations", type=click.Choice(OPERATIONS), multiple=True,
              help="Only these kinds of events (repeatable); default: all of them.")
@click.option("--json", "as_json", is_flag=True, help="One KubeArmor HostLog JSON record per line.")
@click.option("--network-hooks", type=click.Choice(["cgroup", "syscalls"]), default="cgroup", show_default=True,
              help="cgroup: socket hooks, no cost to other syscalls; syscalls: every family and failure.")
def trace_cmd(operations: tuple[str, ...], as_json: bool, network_hooks: str) -> None:
    """Print live system events (process, file, network, capabilities, syscall) until Ctrl-C."""
    if os.geteuid() != 0:
        click.echo("karmor-host: trace loads BPF programs and must run as root", err=True)
        sys.exit(1)
    from karmor_host.alerts.record import HostInfo, host_log  # heavy imports only when tracing
    from karmor_host.kernel.monitor import Monitor

    stop = False

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    host = HostInfo.detect()
    seen: Counter[str] = Counter()
    try:
        with Monitor(visibility=set(operations or OPERATIONS), network_hooks=network_hooks) as mon:
            click.echo(f"karmor-host: tracing on {host.host_name} ({_addresses()}); Ctrl-C stops", err=True)
            for category, reason in sorted(mon.unavailable.items()):
                click.echo(f"karmor-host: {category} events unavailable: {reason}", err=True)
            try:
                while not stop:
                    for event in mon.poll(200):
                        record = host_log(event, host)
                        seen[record["Operation"]] += 1
                        click.echo(json.dumps(record, sort_keys=True) if as_json else text_line(record))
            except BrokenPipeError:  # `| head`: the reader is gone, not an error
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            drops = mon.drops()
    except KarmorError as exc:
        click.echo(f"karmor-host: {exc.message}", err=True)
        sys.exit(exc.code)
    counted = ", ".join(f"{op}={n}" for op, n in sorted(seen.items())) or "none"
    lost = ", ".join(f"{cat}={n}" for cat, n in drops.items())
    click.echo(f"events: {counted}; dropped: {lost}", err=True)
