"""Loading files: syntax errors, encodings, several documents, duplicates, directories."""

from __future__ import annotations

from pathlib import Path

from karmor_host.policy import load_file, load_paths, load_text
from karmor_host.policy import messages as M
from karmor_host.policy import parse

from .helpers import policy_text

PROC = "  process:\n    matchPaths:\n    - path: /usr/bin/true\n"


def good(name: str) -> str:
    return policy_text(name, PROC)


def test_several_documents_in_one_file() -> None:
    r = load_text(good("a") + "---\n" + good("b") + "---\n", "f.yaml")
    assert r.valid and [p.name for p in r.policies] == ["a", "b"]
    assert [p.line for p in r.policies] == [1, 13]  # the second document starts after "---"


def test_one_bad_document_rejects_the_whole_file() -> None:
    r = load_text(good("a") + "---\n" + good("b").replace("/usr/bin/true", "usr/bin/true"), "f.yaml")
    assert not r.valid and r.policies == ()
    assert [str(p) for p in r.problems] == [
        "f.yaml:23:13: spec.process.matchPaths[0].path: must be an absolute path starting with '/';"
        " got 'usr/bin/true'"]


def test_yaml_syntax_error_is_located() -> None:
    r = load_text(good("a") + "  file: [unclosed\n", "f.yaml")
    (p,) = r.problems
    assert (p.line, p.field) == (13, "") and p.message.startswith("YAML syntax error: ")


def test_unquoted_star_gets_a_hint() -> None:
    r = load_text(policy_text("a", PROC, host="*"), "f.yaml")
    (p,) = r.problems
    assert str(p) == (
        "f.yaml:8:31: YAML syntax error: expected alphabetic or numeric character, but found '\\n'"
        " (while scanning an alias); a value starting with '*' is a YAML alias: quote it, e.g. \"*\"")


def test_forbidden_character_is_located() -> None:
    r = load_text(good("a").replace("/usr/bin/true", "/usr/bin/tr\x00ue"), "f.yaml")
    (p,) = r.problems
    assert (p.line, p.col) == (11, 24)  # "    - path: /usr/bin/tr" is 23 characters
    assert p.message == "YAML syntax error: character U+0000 is not allowed in YAML"


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    r = load_text("[" * 5000 + "]" * 5000, "f.yaml")
    assert [p.message for p in r.problems] == [parse.E_YAML_DEPTH]


def test_invalid_utf8_is_located(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_bytes(good("a").encode() + b"  message: caf\xe9\n")
    (p,) = load_file(f).problems
    assert (p.file, p.line, p.col) == (str(f), 12, 15)
    assert p.message.startswith("file is not valid UTF-8 text: ")


def test_bom_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "bom.yaml"
    f.write_bytes(b"\xef\xbb\xbf" + good("a").encode())
    assert load_file(f).ok


def test_missing_and_huge_files(tmp_path: Path) -> None:
    (p,) = load_file(tmp_path / "nope.yaml").problems
    assert p.message == "cannot read file: No such file or directory"
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (parse.MAX_FILE_BYTES + 1))
    (p,) = load_file(big).problems
    assert p.message == parse.E_TOO_BIG.format(limit=parse.MAX_FILE_BYTES)


def test_load_file_with_text_does_not_read_the_path(tmp_path: Path) -> None:
    r = load_file(tmp_path / "absent.yaml", text=good("a"))
    assert r.ok and [p.file for p in r.policies] == [str(tmp_path / "absent.yaml")]


def test_directories_expand_to_their_policy_files(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(good("b"))
    (tmp_path / "a.yaml").write_text(good("a"))
    (tmp_path / "notes.txt").write_text("not a policy")
    (tmp_path / ".hidden.yaml").write_text("{{{ broken")
    (tmp_path / "sub.yaml").mkdir()
    r = load_paths([tmp_path])
    assert r.ok and [f.file for f in r.files] == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yml")]


def test_empty_directory_warns(tmp_path: Path) -> None:
    r = load_paths([tmp_path])
    assert r.ok and [(p.message, p.severity) for p in r.problems] == [(M.W_NO_POLICY_FILES, "warning")]


def test_duplicate_across_files_first_wins_and_names_both(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(good("same"))
    (tmp_path / "b.yaml").write_text(good("other") + "---\n" + good("same"))
    (tmp_path / "c.yaml").write_text(good("third"))
    r = load_paths([tmp_path])
    assert [p.name for p in r.policies] == ["same", "third"]  # b.yaml is rejected as a whole
    (p,) = r.errors
    assert str(p) == (f"{tmp_path}/b.yaml:16:9: metadata.name: policy 'same' is already defined at "
                      f"{tmp_path}/a.yaml:4:9; the first definition wins")


def test_a_broken_file_leaves_other_files_alone(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(good("a").replace("true", "true\n  severity: 0"))
    (tmp_path / "b.yaml").write_text(good("b"))
    r = load_paths([tmp_path])
    assert [p.name for p in r.policies] == ["b"]
    assert [f.valid for f in r.files] == [False, True]


def test_self_referencing_aliases_are_problems_not_loops() -> None:
    text = good("a") + "  tags: &t [*t]\n  file:\n    matchPaths: &m [*m]\n"
    r = load_text(text, "f.yaml")
    assert not r.valid
    assert sorted(p.field for p in r.problems) == ["spec.file.matchPaths[0]", "spec.tags[0]"]
