"""Rule sets from the fixture policies and a deterministic stand-in for the kernel's view of
directories, so plans are the same on every machine."""

from __future__ import annotations

import zlib
from pathlib import Path

from karmor_host.enforce.bpflsm.plan import Protection
from karmor_host.policy import HostIdentity, compile_policies, load_text
from karmor_host.policy.ruleset import Category, Posture, RuleSet

HERE = Path(__file__).parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
IDENTITY = HostIdentity.detect(hostname="web-1")
DEV = 8 << 20 | 1  # what the kernel would call sda1

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


def resolve(directory: str) -> tuple[int, int] | None:
    """A directory's (dev, ino): stable numbers from its path; nothing under /missing/."""
    if directory.startswith("/missing/"):
        return None
    return DEV, zlib.crc32(directory.rstrip("/").encode() or b"/") & 0xFFFFFF


def ino(directory: str) -> int:
    ident = resolve(directory)
    assert ident is not None
    return ident[1]


def postures_of(text: str) -> dict[Category, Posture]:
    first = text.splitlines()[0]
    assert first.startswith("# postures:"), f"fixture must start with '# postures:', not {first!r}"
    out = {}
    for item in first.removeprefix("# postures:").split():
        key, _, value = item.partition("=")
        out[Category(key)] = Posture(value)
    return out


def fixture_ruleset(name: str) -> RuleSet:
    text = (DATA / f"{name}.yaml").read_text()
    result = load_text(text, f"{name}.yaml")
    assert result.valid, [str(p) for p in result.problems]
    return compile_policies(result.policies, IDENTITY, postures_of(text), resolve=str)


def ruleset_of(yaml_text: str, postures: dict[Category, Posture] | None = None) -> RuleSet:
    result = load_text(yaml_text, "p.yaml")
    assert result.valid, [str(p) for p in result.problems]
    return compile_policies(result.policies, IDENTITY, postures or {}, resolve=str)


PROTECT = Protection(programs=("/usr/bin/python3.11",), files=("/etc/karmor/karmor-host.yaml",),
                     dirs=("/etc/karmor/policies/", "/usr/lib/python3/dist-packages/"))
