"""The firewall backend driven directly, inside a namespace (`python -m tests.netns.fwctl`).

    apply FILE [--posture audit|block]       compile, guard, apply; print {"ok", "error"}
    swap FILE1 FILE2 --times N               apply the two alternately N times
    apply-empty                              our table with only its base rules (benchmarks)
    attribution                              attach the netattr programs until stdin closes
    remove                                   remove our table; print {"existed"}
    live                                     print our table's chains and rule comments
    foreign-add / foreign-live               a table of someone else's, inet foreign
    sessions                                 the SSH sessions the guard sees
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from karmor_host import log
from karmor_host.errors import KarmorError
from karmor_host.firewall import guard, plan, sockets
from karmor_host.firewall.backend import NftBackend, cleanup
from karmor_host.policy import HostIdentity, load_paths
from karmor_host.policy.netpolicy import NetRuleSet, compile_network
from karmor_host.policy.ruleset import Posture

FOREIGN = {"family": "inet", "name": "foreign"}


def _apply(backend: NftBackend, path: str, posture: str) -> dict:
    result = load_paths([Path(path)])
    if not result.ok:
        return {"ok": False, "error": "; ".join(str(p) for p in result.errors)}
    rs = compile_network(result.policies, HostIdentity.detect(), Posture(posture))
    p = plan.build(rs)
    problems = guard.check(rs, p, sockets.ssh_sessions())
    if problems:
        return {"ok": False, "error": "; ".join(problems)}
    try:
        backend.apply(p)
    except KarmorError as exc:
        return {"ok": False, "error": exc.message}
    return {"ok": True, "verify": backend.verify(p), "nft_rules": sum(len(c) for c in p.chains.values())}


def _foreign_add(backend: NftBackend) -> None:
    chain = {"family": "inet", "table": "foreign", "name": "in", "type": "filter", "hook": "input",
             "prio": 10, "policy": "accept"}
    rule = {"family": "inet", "table": "foreign", "chain": "in", "comment": "someone else's",
            "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                                "right": 9}}, {"counter": None}, {"accept": None}]}
    backend._run([{"add": {"table": FOREIGN}}, {"add": {"chain": chain}}, {"add": {"rule": rule}}], "add foreign")


def _foreign_live(backend: NftBackend) -> list[str]:
    out = backend._run([{"list": {"table": FOREIGN}}], "list foreign")
    return [i["rule"]["comment"] for i in out["nftables"] if "rule" in i]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="fwctl")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("apply")
    a.add_argument("file")
    a.add_argument("--posture", default="audit")
    s = sub.add_parser("swap")
    s.add_argument("first")
    s.add_argument("second")
    s.add_argument("--times", type=int, default=20)
    s.add_argument("--posture", default="block")
    for name in ("apply-empty", "attribution", "remove", "live", "foreign-add", "foreign-live", "sessions"):
        sub.add_parser(name)
    args = ap.parse_args(argv)
    log.configure(level="warning", stream=sys.stderr)  # stdout is for the JSON answer
    backend = NftBackend()
    if args.cmd == "apply":
        out: object = _apply(backend, args.file, args.posture)
    elif args.cmd == "swap":
        results = [_apply(backend, (args.first, args.second)[i % 2], args.posture) for i in range(args.times)]
        out = {"ok": all(r["ok"] for r in results), "errors": [r.get("error") for r in results if not r["ok"]]}
    elif args.cmd == "apply-empty":
        backend.apply(plan.build(NetRuleSet()))
        out = {"ok": True}
    elif args.cmd == "attribution":
        from karmor_host.firewall.attribution import EgressAttribution
        from karmor_host.kernel.cgroup import cgroup2_root
        from karmor_host.paths import default_bpf_object_dir

        attr = EgressAttribution(default_bpf_object_dir(), cgroup2_root())
        print(json.dumps({"attached": True}), flush=True)
        sys.stdin.read()  # until the caller closes our stdin
        attr.close()
        return 0
    elif args.cmd == "remove":
        out = {"existed": bool(cleanup())}
    elif args.cmd == "live":
        out = backend.live()
    elif args.cmd == "foreign-add":
        _foreign_add(backend)
        out = {"ok": True}
    elif args.cmd == "foreign-live":
        out = _foreign_live(backend)
    else:
        out = [s.text() for s in sockets.ssh_sessions()]
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
