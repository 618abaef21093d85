"""The closed name sets of the policy language: protocols, capabilities, syscalls.

Kept as data beside their kernel numbers so enforcers can translate without a second table.
"""

from __future__ import annotations

from types import MappingProxyType

from karmor_host.policy.syscalls_x86_64 import SYSCALLS_X86_64

# KubeArmor's protocol words; the first four are protocols, the rest socket types/families.
PROTOCOLS: tuple[str, ...] = (
    "tcp", "udp", "icmp", "icmpv6", "raw", "sctp", "stream", "dgram", "rdm", "seqpacket",
    "dccp", "packet", "all",
)

# linux/capability.h, lower-case without the CAP_ prefix, with their bit numbers.
CAPABILITIES: MappingProxyType[str, int] = MappingProxyType({
    "chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "fsetid": 4, "kill": 5,
    "setgid": 6, "setuid": 7, "setpcap": 8, "linux_immutable": 9, "net_bind_service": 10,
    "net_broadcast": 11, "net_admin": 12, "net_raw": 13, "ipc_lock": 14, "ipc_owner": 15,
    "sys_module": 16, "sys_rawio": 17, "sys_chroot": 18, "sys_ptrace": 19, "sys_pacct": 20,
    "sys_admin": 21, "sys_boot": 22, "sys_nice": 23, "sys_resource": 24, "sys_time": 25,
    "sys_tty_config": 26, "mknod": 27, "lease": 28, "audit_write": 29, "audit_control": 30,
    "setfcap": 31, "mac_override": 32, "mac_admin": 33, "syslog": 34, "wake_alarm": 35,
    "block_suspend": 36, "audit_read": 37, "perfmon": 38, "bpf": 39, "checkpoint_restore": 40,
})

SYSCALLS: MappingProxyType[str, int] = SYSCALLS_X86_64

MAX_PATH = 200  # KubeArmor's limit for path, dir and fromSource.path
