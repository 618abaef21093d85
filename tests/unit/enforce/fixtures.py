"""What every enforcer's unit tests share: rule sets compiled from fixture policies the same way
on every machine, golden files compared (or rewritten on request), and `policy translate` run
in-process."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from karmor_host.cli import main
from karmor_host.policy import HostIdentity, compile_policies, load_text
from karmor_host.policy.ruleset import Category, Posture, RuleSet
from tests.policytext import host_policy

IDENTITY = HostIdentity.detect(hostname="web-1")
REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted(str(p) for p in (REPO / "policies").glob("*.yaml"))  # the shipped example policies

HEAD = host_policy("{name}", "")  # a template: HEAD.format(name=...) + body


def policy(name: str, body: str) -> str:
    """A host policy for every host, named `name`, with `body` under its spec."""
    return host_policy(name, body)


def postures_of(text: str) -> dict[Category, Posture]:
    """A fixture's first line: `# postures: file=block network=audit capabilities=audit`."""
    first = text.splitlines()[0]
    assert first.startswith("# postures:"), f"fixture must start with '# postures:', not {first!r}"
    out = {}
    for item in first.removeprefix("# postures:").split():
        key, _, value = item.partition("=")
        out[Category(key)] = Posture(value)
    return out


def fixture_ruleset(data: Path, name: str) -> RuleSet:
    """The rule set of fixture data/<name>.yaml, with the postures its first line names."""
    text = (data / f"{name}.yaml").read_text()
    result = load_text(text, f"{name}.yaml")  # the file name rule comments show
    assert result.valid, [str(p) for p in result.problems]
    # Paths as written (no symlink resolution), so goldens do not depend on this machine.
    return compile_policies(result.policies, IDENTITY, postures_of(text), resolve=str)


def ruleset_of(yaml_text: str, postures: dict[Category, Posture] | None = None) -> RuleSet:
    result = load_text(yaml_text, "p.yaml")
    assert result.valid, [str(p) for p in result.problems]
    return compile_policies(result.policies, IDENTITY, postures or {}, resolve=str)


def check_golden(text: str, golden: Path) -> None:
    """`text` must equal the golden file; KARMOR_UPDATE_GOLDEN=1 rewrites the file instead."""
    if os.environ.get("KARMOR_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden} differs; KARMOR_UPDATE_GOLDEN=1 rewrites it"


def translate(*args: str) -> tuple[int, str, str]:
    """`karmor-host policy translate ARGS`: exit status, stdout, stderr."""
    result = CliRunner(mix_stderr=False).invoke(main, ["policy", "translate", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr
