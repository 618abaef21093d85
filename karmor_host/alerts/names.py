"""Linux x86_64 constant names used in alert records and by the matcher, as plain data.

Values are from the kernel UAPI headers (linux/socket.h, linux/net.h, linux/in.h,
asm-generic/fcntl.h, linux/capability.h). They are ABI and never change for a given
number, so a table here is safer than importing `socket` (which only knows what the
Python build knew about).
"""

from __future__ import annotations

import os

ADDRESS_FAMILIES: dict[int, str] = {
    0: "AF_UNSPEC",
    1: "AF_UNIX",
    2: "AF_INET",
    3: "AF_AX25",
    4: "AF_IPX",
    5: "AF_APPLETALK",
    9: "AF_X25",
    10: "AF_INET6",
    15: "AF_KEY",
    16: "AF_NETLINK",
    17: "AF_PACKET",
    29: "AF_CAN",
    31: "AF_BLUETOOTH",
    38: "AF_ALG",
    40: "AF_VSOCK",
    44: "AF_XDP",
}
AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_PACKET = 17

SOCKET_TYPES: dict[int, str] = {
    1: "SOCK_STREAM",
    2: "SOCK_DGRAM",
    3: "SOCK_RAW",
    4: "SOCK_RDM",
    5: "SOCK_SEQPACKET",
    6: "SOCK_DCCP",
    10: "SOCK_PACKET",
}
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3
SOCK_RDM = 4
SOCK_SEQPACKET = 5
SOCK_DCCP = 6
SOCK_PACKET = 10
SOCK_TYPE_MASK = 0xF  # socket(2) ORs SOCK_NONBLOCK / SOCK_CLOEXEC into the type
SOCKET_TYPE_FLAGS: tuple[tuple[int, str], ...] = (
    (0o4000, "SOCK_NONBLOCK"),
    (0o2000000, "SOCK_CLOEXEC"),
)

# The short names KubeArmor prints in `protocol=` (anything else is printed as a number).
IP_PROTOCOLS: dict[int, str] = {
    1: "ICMP",
    2: "IGMP",
    6: "TCP",
    17: "UDP",
    33: "DCCP",
    58: "ICMPv6",
    132: "SCTP",
    136: "UDPLITE",
    255: "RAW",
    262: "MPTCP",
}
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_DCCP = 33
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132
IPPROTO_MPTCP = 262

# open(2) flags, x86_64 values, in the order KubeArmor prints them.
O_ACCMODE = 0o3
O_ACCESS_MODES: dict[int, str] = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}
O_WRONLY = 0o1
O_RDWR = 0o2
O_CREAT = 0o100
O_TRUNC = 0o1000
O_APPEND = 0o2000
O_DIRECTORY = 0o200000
_O_DSYNC = 0o10000
_O_SYNC_BIT = 0o4000000  # __O_SYNC; O_SYNC is __O_SYNC | O_DSYNC
_O_TMPFILE_BIT = 0o20000000  # __O_TMPFILE; O_TMPFILE is __O_TMPFILE | O_DIRECTORY
OPEN_FLAGS: tuple[tuple[int, str], ...] = (
    (O_CREAT, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (O_TRUNC, "O_TRUNC"),
    (O_APPEND, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (_O_SYNC_BIT | _O_DSYNC, "O_SYNC"),  # before O_DSYNC: O_SYNC includes its bit
    (_O_DSYNC, "O_DSYNC"),
    (0o20000, "FASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (_O_TMPFILE_BIT | O_DIRECTORY, "O_TMPFILE"),  # before O_DIRECTORY, same reason
    (O_DIRECTORY, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
)
# An open that can change the file: a readOnly rule denies these and only these.
WRITE_FLAGS = O_CREAT | O_TRUNC | O_APPEND

# linux/capability.h: number -> policy name (lower case, without cap_).
CAPABILITIES: dict[int, str] = {
    0: "chown",
    1: "dac_override",
    2: "dac_read_search",
    3: "fowner",
    4: "fsetid",
    5: "kill",
    6: "setgid",
    7: "setuid",
    8: "setpcap",
    9: "linux_immutable",
    10: "net_bind_service",
    11: "net_broadcast",
    12: "net_admin",
    13: "net_raw",
    14: "ipc_lock",
    15: "ipc_owner",
    16: "sys_module",
    17: "sys_rawio",
    18: "sys_chroot",
    19: "sys_ptrace",
    20: "sys_pacct",
    21: "sys_admin",
    22: "sys_boot",
    23: "sys_nice",
    24: "sys_resource",
    25: "sys_time",
    26: "sys_tty_config",
    27: "mknod",
    28: "lease",
    29: "audit_write",
    30: "audit_control",
    31: "setfcap",
    32: "mac_override",
    33: "mac_admin",
    34: "syslog",
    35: "wake_alarm",
    36: "block_suspend",
    37: "audit_read",
    38: "perfmon",
    39: "bpf",
    40: "checkpoint_restore",
}
CAPABILITY_NUMBERS: dict[str, int] = {name: num for num, name in CAPABILITIES.items()}


# Labels of Event.sys_args in the Data field, KubeArmor's words where it has them
# (`syscall=SYS_SETUID userid=0`, `syscall=SYS_MOUNT source=... target=... filesystem=...`).
# "target" is the event's path.
SYSCALL_ARG_LABELS: dict[str, tuple[str, ...]] = {
    "unlinkat": ("flags",),
    "umount2": ("target", "flag"),
    "chown": ("userid", "group"),
    "fchownat": ("userid", "group", "mode"),
    "setuid": ("userid",),
    "setgid": ("userid",),
    "ptrace": ("request", "pid"),
    "mount": ("source", "target", "filesystem", "mountflag"),
}


def family_name(family: int) -> str:
    return ADDRESS_FAMILIES.get(family, str(family))


def socket_type_name(sock_type: int) -> str:
    """`SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC`, as KubeArmor prints socket(2)'s type."""
    base = sock_type & SOCK_TYPE_MASK
    parts = [SOCKET_TYPES.get(base, str(base))]
    parts += [name for bit, name in SOCKET_TYPE_FLAGS if sock_type & bit]
    return "|".join(parts)


def protocol_name(family: int, protocol: int) -> str:
    # Only IP families carry IPPROTO_* numbers; AF_PACKET carries an ethertype (e.g. 768).
    if family in (AF_INET, AF_INET6):
        return IP_PROTOCOLS.get(protocol, str(protocol))
    return str(protocol)


def open_flags_text(flags: int) -> str:
    """`O_RDONLY|O_CLOEXEC`: access mode first, then each set flag; leftover bits in octal."""
    parts = [O_ACCESS_MODES.get(flags & O_ACCMODE, "O_ACCMODE")]
    rest = flags & ~O_ACCMODE
    for bits, name in OPEN_FLAGS:
        if rest & bits == bits:
            parts.append(name)
            rest &= ~bits
    if rest:
        parts.append(oct(rest))
    return "|".join(parts)


def is_write_open(flags: int) -> bool:
    return (flags & O_ACCMODE) in (O_WRONLY, O_RDWR) or bool(flags & WRITE_FLAGS)


def capability_name(number: int) -> str:
    """`CAP_NET_RAW` (upper case, as in records); `CAP_<n>` for numbers newer than the table."""
    name = CAPABILITIES.get(number)
    return f"CAP_{name.upper()}" if name else f"CAP_{number}"


def syscall_symbol(name: str) -> str:
    """`unlinkat` -> `SYS_UNLINKAT`, KubeArmor's spelling in the Data field."""
    return "SYS_" + name.upper()


def result_text(retval: int) -> str:
    """KubeArmor's Result: `Passed` for success, else the C library's text for -errno."""
    if retval >= 0:
        return "Passed"
    text = os.strerror(-retval)
    # glibc answers "Unknown error N" for numbers it has no text for; KubeArmor says "Unknown (-N)".
    return f"Unknown ({retval})" if text.startswith("Unknown error") else text
