"""The `karmor-host` command line. One module per command group; each command parses its
options, calls one package function and renders the result (table or --json)."""

from __future__ import annotations

import click

from karmor_host import __version__
from karmor_host import log


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="Verbosity of the agent's own logs (stderr).")
def main(log_level: str) -> None:
    """karmor-host: KubeArmorHostPolicy enforcement for Linux hosts."""
    log.configure(level=log_level)


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(f"karmor-host {__version__}")


def _register() -> None:
    # Imported here so that each command module can import `main` without a cycle.
    from karmor_host.cli import logs as _logs  # noqa: F401
    from karmor_host.cli import policy as _policy  # noqa: F401
    from karmor_host.cli import probe as _probe  # noqa: F401
    from karmor_host.cli import run as _run  # noqa: F401
    from karmor_host.cli import trace as _trace  # noqa: F401


_register()
