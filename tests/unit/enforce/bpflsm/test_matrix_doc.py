"""docs/enforcement-matrix.md: generated from the VM suite's results, complete for BPF-LSM,
and regenerating it for one backend keeps the others' columns."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("gen_matrix", REPO / "tools" / "gen-enforcement-matrix.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


def _row(backend, category, mode, scope, action="Block"):
    return {"backend": backend, "category": category, "mode": mode, "scope": scope, "effect": "EACCES",
            "alert": {"PolicyName": "p", "Action": action, "Enforcer": backend, "Result": "Permission denied"},
            "note": "", "kernel": "6.1.0-test"}


def test_the_committed_document_lists_every_cell_and_bpflsm_verified_them():
    assert gen.check(gen.DOC) == []


def test_every_cell_has_a_row_and_inapplicable_cells_say_why(tmp_path):
    doc = tmp_path / "m.md"
    rows = [_row("BPF-LSM", c, m, s) for c, m, s in gen.cells() if gen.applicable(c, s)]
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert gen.main([str(results), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert gen.check(doc) == []
    assert text.count("| network | Block | global | " + gen.NOT_APPLICABLE) == 1
    assert len([ln for ln in text.splitlines() if ln.startswith("| process |")]) == 8


def test_regenerating_for_one_backend_keeps_the_others(tmp_path):
    doc = tmp_path / "m.md"
    first = tmp_path / "a.jsonl"
    first.write_text(json.dumps(_row("AppArmor", "file", "Block", "global")) + "\n")
    gen.main([str(first), "--doc", str(doc)])
    second = tmp_path / "b.jsonl"
    second.write_text(json.dumps(_row("BPF-LSM", "file", "Block", "global")) + "\n")
    gen.main([str(second), "--doc", str(doc)])
    line = next(ln for ln in doc.read_text().splitlines() if ln.startswith("| file | Block | global |"))
    assert line.count("EACCES") == 2  # both columns
    assert "| BPF-LSM | AppArmor |" in doc.read_text()


def test_check_finds_unverified_and_hand_edits(tmp_path):
    doc = tmp_path / "m.md"
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps(_row("BPF-LSM", "file", "Block", "global")) + "\n")
    gen.main([str(results), "--doc", str(doc)])
    problems = gen.check(doc)
    assert any("process / Block / global is not verified" in p for p in problems)
    doc.write_text(doc.read_text().replace("EACCES", "EPERM", 1))
    assert any("edited by hand" in p for p in gen.check(doc))
