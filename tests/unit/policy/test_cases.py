"""Data-driven validation cases: data/<group>/<case>.yaml beside <case>.expected.

bad/: each breaks one rule; the file yields no policy and exactly the expected lines.
warn/: each holds an unambiguous slip; the file is accepted with exactly the expected warnings.
kubearmor/: KubeArmor's published host-policy shapes; all accepted (sloppy ones with warnings).
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from karmor_host.policy import load_text
from karmor_host.policy import messages as M

from .helpers import DATA


def cases(group: str) -> list[Path]:
    return sorted((DATA / group).glob("*.yaml"))


def run(path: Path) -> tuple[list[str], object]:
    result = load_text(path.read_text(encoding="utf-8"), path.name)
    return [str(p) for p in result.problems], result


def expected(path: Path) -> list[str]:
    return path.with_suffix(".expected").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("path", cases("bad"), ids=lambda p: p.stem)
def test_bad_case_is_rejected_with_exact_problems(path: Path) -> None:
    lines, result = run(path)
    assert lines == expected(path)
    assert not result.valid and result.policies == ()
    assert any(" warning:" not in line for line in lines)


@pytest.mark.parametrize("path", cases("warn"), ids=lambda p: p.stem)
def test_slip_is_accepted_with_exact_warnings(path: Path) -> None:
    lines, result = run(path)
    assert lines == expected(path)
    assert result.valid
    assert all(p.severity == "warning" for p in result.problems) and lines
    if path.stem != "empty-file":
        assert len(result.policies) == 1


@pytest.mark.parametrize("path", cases("kubearmor"), ids=lambda p: p.stem)
def test_kubearmor_shape_is_accepted(path: Path) -> None:
    lines, result = run(path)
    assert lines == expected(path)
    assert result.valid and len(result.policies) == 1


def _template_regex(template: str) -> re.Pattern[str]:
    out = ""
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        out += re.escape(literal.replace("{{", "{").replace("}}", "}"))
        if field is not None:
            out += ".*?"
    return re.compile(out)


# Templates whose cases need a real file or directory; tested in test_load.py / test_parse.py.
TESTED_ELSEWHERE = {"W_NO_POLICY_FILES"}


def test_every_message_template_has_a_case() -> None:
    """Each rule the validator enforces has at least one fixture showing its message."""
    outputs = "\n".join(
        p.with_suffix(".expected").read_text(encoding="utf-8")
        for group in ("bad", "warn") for p in cases(group)
    )
    missing = [
        name for name, template in vars(M).items()
        if name[:2] in ("E_", "W_") and name not in TESTED_ELSEWHERE
        and not _template_regex(template).search(outputs)
    ]
    assert missing == []


def test_severity_11_on_line_9() -> None:
    path = DATA / "bad" / "severity-range.yaml"
    assert path.read_text().splitlines()[8] == "  severity: 11"
    (line,) = run(path)[0]
    assert line == "severity-range.yaml:9:13: spec.severity: must be a whole number in 1..10; got 11"
