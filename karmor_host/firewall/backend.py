"""Our nftables table in the kernel, through python3-nftables' JSON interface.

apply: one batch (plan.py) replaces the table atomically; any error leaves the previous
table untouched. verify: the live table against the plan. counters: the named counters.
remove: delete our table. Only the table `inet karmor` is ever named; other tables, and the
rest of the ruleset, are never listed, flushed or changed.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from karmor_host.errors import EnforcerError
from karmor_host.firewall.plan import FAMILY, TABLE, Plan, removal

_TABLE = {"family": FAMILY, "name": TABLE}


class NftBackend:
    """One libnftables context; calls are serialised (the context is not thread-safe)."""

    def __init__(self) -> None:
        try:
            import nftables  # python3-nftables (Debian), seen through the venv's system site packages
        except ImportError as exc:
            raise EnforcerError(f"network policies need python3-nftables: {exc}") from None
        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(False)
        self._lock = threading.Lock()

    def _run(self, commands: list[dict[str, Any]], what: str) -> Any:
        with self._lock:
            rc, out, err = self._nft.json_cmd({"nftables": commands})
        if rc != 0:
            raise EnforcerError(f"nftables refused to {what}: {str(err).strip() or f'error {rc}'}")
        return out

    def apply(self, plan: Plan) -> None:
        """Replace our table with `plan` in one transaction (raises EnforcerError, then
        nothing changed)."""
        self._run(list(plan.batch), "apply the rule set")

    def remove(self) -> bool:
        """Delete our table; True when there was one."""
        existed = self.exists()
        if existed:
            self._run(list(removal()), "remove the table")
        return existed

    def _list(self) -> list[dict[str, Any]] | None:
        with self._lock:
            rc, out, _err = self._nft.json_cmd({"nftables": [{"list": {"table": _TABLE}}]})
        if rc != 0:
            return None  # no such table
        doc = out if isinstance(out, dict) else json.loads(out or "{}")
        return list(doc.get("nftables", []))

    def exists(self) -> bool:
        return self._list() is not None

    def live(self) -> dict[str, list[str]] | None:
        """chain -> rule comments, in order; None when the table is absent."""
        items = self._list()
        if items is None:
            return None
        chains: dict[str, list[str]] = {}
        for item in items:
            if "chain" in item:
                chains.setdefault(item["chain"]["name"], [])
            elif "rule" in item:
                rule = item["rule"]
                chains.setdefault(rule["chain"], []).append(rule.get("comment", ""))
        return chains

    def verify(self, plan: Plan) -> list[str]:
        """Differences between the live table and `plan` (empty: they agree)."""
        live = self.live()
        if live is None:
            return [f"table {FAMILY} {TABLE} is missing"]
        problems = []
        for chain, comments in plan.chains.items():
            got = live.get(chain)
            if got is None:
                problems.append(f"chain {chain} is missing")
            elif tuple(got) != comments:
                problems.append(f"chain {chain} holds {len(got)} rules, the plan {len(comments)}")
        problems += [f"chain {c} is not in the plan" for c in sorted(set(live) - set(plan.chains))]
        return problems

    def counters(self) -> dict[str, int]:
        """Named counter -> packets; {} when the table is absent."""
        out: dict[str, int] = {}
        for item in self._list() or ():
            counter = item.get("counter")
            if counter is not None:
                out[counter["name"]] = int(counter.get("packets", 0))
        return out


def cleanup() -> list[str]:
    """Remove our table from this network namespace, agent or not (for `run --cleanup`);
    returns what was removed."""
    return [f"nftables table {FAMILY} {TABLE}"] if NftBackend().remove() else []
