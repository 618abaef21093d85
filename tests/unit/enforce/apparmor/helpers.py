"""Rule sets from the fixture policies, compiled the same way on every machine."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from karmor_host.policy import HostIdentity, compile_policies, load_text
from karmor_host.policy.ruleset import Category, Posture, RuleSet

HERE = Path(__file__).parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
IDENTITY = HostIdentity.detect(hostname="web-1")
PARSER = shutil.which("apparmor_parser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "/usr/sbin/apparmor_parser"


def postures_of(text: str) -> dict[Category, Posture]:
    """A fixture's first line: `# postures: file=block network=audit capabilities=audit`."""
    first = text.splitlines()[0]
    assert first.startswith("# postures:"), f"fixture must start with '# postures:', not {first!r}"
    out = {}
    for item in first.removeprefix("# postures:").split():
        key, _, value = item.partition("=")
        out[Category(key)] = Posture(value)
    return out


def fixture_ruleset(name: str) -> RuleSet:
    text = (DATA / f"{name}.yaml").read_text()
    result = load_text(text, f"{name}.yaml")  # the file name rule comments show
    assert result.valid, [str(p) for p in result.problems]
    # Paths as written (no symlink resolution), so goldens do not depend on this machine.
    return compile_policies(result.policies, IDENTITY, postures_of(text), resolve=str)


def ruleset_of(yaml_text: str, postures: dict[Category, Posture] | None = None) -> RuleSet:
    result = load_text(yaml_text, "p.yaml")
    assert result.valid, [str(p) for p in result.problems]
    return compile_policies(result.policies, IDENTITY, postures or {}, resolve=str)


def parser_check(text: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """apparmor_parser -Q (no kernel load, no cache) on `text`: works without AppArmor in the
    running kernel."""
    path = tmp / "profiles"
    path.write_text(text)
    return subprocess.run([PARSER, "-Q", "-K", str(path)], capture_output=True, text=True, timeout=120)


HEAD = """\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: {name}
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
"""


def policy(name: str, body: str) -> str:
    return HEAD.format(name=name) + body
