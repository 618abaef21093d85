"""The BPF-LSM enforcer: rules decided in the kernel by programs on LSM hooks.

plan.py (RuleSet -> map contents, pure) · backend.py (load, pin, adopt, swap, clean up,
through karmor_host/kernel) · events.py (kernel decisions -> alerts) · enforcer.py (the
Enforcer the agent drives) · abi.py (mirror of bpf/include/lsm.h). Design: docs/bpf-lsm.md.
"""
