"""`karmor-host logs`: alerts and logs read back from the journal, like `karmor logs`."""

from __future__ import annotations

import json
import sys

import click

from karmor_host.alerts import journal_reader
from karmor_host.alerts.sinks.stdout import format_text
from karmor_host.cli import main

_OPERATIONS = {op.lower(): op for op in journal_reader.OPERATIONS}


@main.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new records as they arrive.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line, exactly as recorded.")
@click.option("--policy", metavar="NAME", help="Only records of this policy (or DefaultPosture).")
@click.option("--operation", type=click.Choice(list(journal_reader.OPERATIONS), case_sensitive=False),
              help="Only records of this operation.")
@click.option("--since", metavar="TIME",
              help="Start at TIME: '2024-06-01 16:39', ISO 8601, '@<unix seconds>', '10m', '2h ago', 'today'.")
@click.option("--type", "kind", type=click.Choice(list(journal_reader.TYPES)), default="all", show_default=True,
              help="alert = MatchedHostPolicy and MatchedNetworkPolicy, log = HostLog, system = SystemEvent.")
def logs_cmd(follow: bool, as_json: bool, policy: str | None, operation: str | None,
             since: str | None, kind: str) -> None:
    """Print karmor-host records from the journal (SYSLOG_IDENTIFIER=karmor-host)."""
    try:
        when = journal_reader.parse_since(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    query = journal_reader.Query(
        policy=policy,
        operation=_OPERATIONS[operation.lower()] if operation else None,
        kind=kind,
        since=when,
    )
    try:
        reader = journal_reader.open_reader(query, follow=follow)
    except ImportError:
        click.echo("karmor-host: python3-systemd is not installed; cannot read the journal", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"karmor-host: cannot open the journal: {exc}", err=True)
        sys.exit(1)
    stream = journal_reader.follow(reader) if follow else journal_reader.entries(reader)
    try:
        for text in stream:
            click.echo(text if as_json else format_text(json.loads(text)))
    except KeyboardInterrupt:
        pass
