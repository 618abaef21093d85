"""Our globs as AppArmor globs, checked against the real parser's own conversion.

`apparmor_parser -Q -D rule-exprs` prints each glob as the regular expression it compiles
(`aare: /etc/* -> /etc/[^/\\x00][^/\\x00]*`). Those are Python-compatible, so each translation
is tested by matching sample paths with both our matcher's regex (alerts/glob.py) and the
parser's, for file rules (paths also looked up as directories, with a trailing "/") and exec
rules.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from karmor_host.alerts.glob import compile_glob
from karmor_host.enforce.apparmor import aare
from tests.unit.enforce.apparmor.helpers import PARSER

PATTERNS = [
    "/home/*/.ssh/id_*", "/a/**/b", "**/id_rsa", "**.pem", "/a/*.txt", "/tmp/*", "/x/[!ab]c",
    "/x/[a-c]?", "/odd{1,2}@x", "/a/***", "/a/b[", "/a/**x/c", "/srv/**", "/etc/*/conf",
    "/q/a,b", "/sp ace/*", "/h#sh/x", "/car^et", "/dot.*.d/*",
]
PATHS = [
    "/home/u/.ssh/id_rsa", "/home/.ssh/id_rsa", "/home/u/v/.ssh/id_rsa", "/a/b", "/a/x/y/b", "/ab",
    "/id_rsa", "/x/id_rsa", "/x.pem", "/a/b/c.pem", "/a/.txt", "/a/f.txt", "/a/d/f.txt", "/tmp",
    "/tmp/f", "/tmp/d/f", "/x/cc", "/x/ac", "/x/bc", "/x/a1", "/x/d1", "/odd{1,2}@x", "/odd1@x",
    "/a/b[", "/a/bb", "/a/zx/c", "/a/x/c", "/a/k/zx/c", "/srv/a", "/srv/a/b", "/srv", "/etc/a/conf",
    "/etc/a/b/conf", "/q/a,b", "/sp ace/f", "/h#sh/x", "/car^et", "/dot.x.d/f", "/dot..d/f", "/a",
]


def _py_regex(aa: str) -> re.Pattern[str]:
    """The parser's regex dialect (libapparmor_re: `* + . | ( ) [ ]` and `\\` escapes; `?`,
    `{`, `}`, `^`, `$` are plain characters outside a class) as a Python regex."""
    out, i, in_class = [], 0, False
    while i < len(aa):
        c = aa[i]
        if c == "\\" and i + 1 < len(aa):
            out.append(aa[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]" or aa[i - 1] == "["
        elif c == "[":
            in_class = True
        elif c in "?{}^$":
            c = "\\" + c
        out.append(c)
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _parser_regexes(globs: list[str], perm: str, tmp_path) -> dict[str, re.Pattern[str]]:
    lines = "".join(f"  audit deny {g} {perm},\n" for g in globs)
    path = tmp_path / "t.apparmor"
    path.write_text(f"abi <abi/3.0>,\nprofile karmor-t /** {{\n{lines}}}\n")
    proc = subprocess.run([PARSER, "-Q", "-K", "-D", "rule-exprs", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in (proc.stdout + proc.stderr).split("\n"):
        if line.startswith("aare: "):
            glob, _, regex = line.removeprefix("aare: ").partition("   ->   ")
            out[glob] = _py_regex(regex)
    return out


def _unquote(glob: str) -> str:
    assert glob.startswith('"') and glob.endswith('"')
    return glob[1:-1]


def _aa_matches(globs: list[str], regexes: dict[str, re.Pattern[str]], path: str) -> bool:
    return any(regexes[_unquote(g)].fullmatch(path) for g in globs)


def test_file_patterns_mean_what_our_matcher_means(tmp_path):
    per_pattern = {p: aare.file_globs("pattern", p) for p in PATTERNS}
    regexes = _parser_regexes([g for gs in per_pattern.values() for g in gs], "r", tmp_path)
    for pattern, globs in per_pattern.items():
        ours = compile_glob(pattern)
        for path in PATHS:
            # The matcher strips a trailing "/" from event paths; AppArmor looks a directory up
            # with it. Both spellings of the same object must get the same answer.
            for looked_up in (path, path + "/"):
                assert _aa_matches(globs, regexes, looked_up) == bool(ours.fullmatch(path)), (
                    f"pattern {pattern!r} ({globs}) on {looked_up!r}")


def test_exec_patterns_mean_what_our_matcher_means(tmp_path):
    per_pattern = {p: aare.exec_globs("pattern", p) for p in PATTERNS}
    regexes = _parser_regexes([g for gs in per_pattern.values() for g in gs], "x", tmp_path)
    for pattern, globs in per_pattern.items():
        ours = compile_glob(pattern)
        for path in PATHS:
            assert _aa_matches(globs, regexes, path) == bool(ours.fullmatch(path)), (pattern, globs, path)


def test_directories_hold_their_contents_not_themselves(tmp_path):
    cases = {
        ("dir", "/etc/", False): {"/etc/passwd": True, "/etc/ssh/": True, "/etc/ssh/x": False, "/etc/": False},
        ("dir", "/etc/", True): {"/etc/passwd": True, "/etc/ssh/": True, "/etc/ssh/x": True, "/etc/": False},
        ("path", "/etc/ssh", False): {"/etc/ssh": True, "/etc/ssh/": True, "/etc/ssh/x": False},
    }
    per_case = {c: aare.file_globs(*c) for c in cases}
    regexes = _parser_regexes([g for gs in per_case.values() for g in gs], "r", tmp_path)
    for case, expected in cases.items():
        for path, hit in expected.items():
            assert _aa_matches(per_case[case], regexes, path) == hit, (case, path)


def test_execname_matches_the_base_name_in_any_directory(tmp_path):
    globs = aare.exec_globs("execname", "nc")
    regexes = _parser_regexes(globs, "x", tmp_path)
    assert [_aa_matches(globs, regexes, p) for p in ("/nc", "/usr/bin/nc", "/usr/bin/ncat", "/x/anc")] == [
        True, True, False, False]


_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x24F, blacklist_characters="\x7f"),
    min_size=1, max_size=20,
)


@settings(max_examples=25, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=8, unique=True))
def test_literal_paths_stay_literal(tmp_path_factory, names):
    """Any characters in an exact path (spaces, quotes, braces, @{, #, backslashes, UTF-8)
    compile to a regex that matches exactly that path. Each path starts with its own number,
    which is how its regex is found in the parser's output."""
    paths = [f"/{i}/" + n.replace("/", "_") for i, n in enumerate(names)]
    globs = [aare.file_globs("path", p)[0] for p in paths]
    regexes = list(_parser_regexes(globs, "r", tmp_path_factory.mktemp("lit")).values())
    for i, path in enumerate(paths):
        (regex,) = [r for r in regexes if r.pattern.startswith(f"/{i}/")]
        assert regex.fullmatch(path), (path, globs[i], regex.pattern)
        assert not regex.fullmatch(path + "x")


def test_unanchored_patterns_are_refused():
    assert not aare.anchored("relative/x") and aare.anchored("**/x") and aare.anchored("/x")
    with pytest.raises(ValueError):
        aare.file_globs("pattern", "relative/x")
