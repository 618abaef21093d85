"""The host network firewall: NetRuleSet -> one nftables table of ours, and its alerts.

    plan.py         NetRuleSet -> nftables JSON batch (pure, golden-tested)
    evaluate.py     the same semantics in Python: what would a new flow meet (pure)
    guard.py        the lock-out guard: refuse rule sets that cut SSH sessions or loopback
    backend.py      apply the batch atomically, verify, read counters, remove (python3-nftables)
    nflog.py        NFLOG netlink reader; packet.py decodes the logged headers
    attribution.py  which process: cgroup connect/sendmsg programs (egress), listeners (ingress)
    alerts.py       logged packet + rule + process -> MatchedNetworkPolicy record
    manager.py      the life cycle the agent drives: apply, keep last good, reader thread, status
"""
