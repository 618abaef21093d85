/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * The ABI between the monitor's BPF programs and karmor_host/kernel (abi.py mirrors it and
 * a unit test compares the mirror with the BTF of the built object). Rules: fixed-width
 * types only, explicit padding, every struct size asserted, bump KARMOR_ABI_VERSION on any
 * change.
 *
 * A ring-buffer record is: struct karmor_hdr, then the body of its kind (fixed size per
 * kind, see below), then the strings whose lengths are in hdr.str_len, in enum karmor_str
 * order. A string is either plain bytes, or, when its bit is set in hdr.str_walked, the
 * components of a path walked from the leaf up to the root, each NUL-terminated (user
 * space reverses and joins them: "c\0b\0a\0" is /a/b/c, and no components is "/").
 */
#ifndef KARMOR_H
#define KARMOR_H

#define KARMOR_ABI_VERSION 1

/* Values are part of the ABI: karmor_host.kernel.events.EventKind has the same ones. */
enum karmor_event_kind {
	KARMOR_EV_EXEC = 1,
	KARMOR_EV_FORK = 2,
	KARMOR_EV_EXIT = 3,
	KARMOR_EV_OPEN = 4,
	KARMOR_EV_SOCKET = 5,
	KARMOR_EV_CONNECT = 6,
	KARMOR_EV_ACCEPT = 7,
	KARMOR_EV_BIND = 8,
	KARMOR_EV_CAPABLE = 9,
	KARMOR_EV_SYSCALL = 10,
	KARMOR_EV_MAX,
};

/* Visibility categories: the index of the per-CPU drop counters. */
enum karmor_category {
	KARMOR_CAT_PROCESS = 0,
	KARMOR_CAT_FILE = 1,
	KARMOR_CAT_NETWORK = 2,
	KARMOR_CAT_CAPABILITIES = 3,
	KARMOR_CAT_SYSCALL = 4,
	KARMOR_CAT_MAX,
};

/* The syscall an event came from (hdr.syscall); 0 for scheduler and capability events. */
enum karmor_syscall {
	KARMOR_SYS_NONE = 0,
	KARMOR_SYS_OPEN,
	KARMOR_SYS_OPENAT,
	KARMOR_SYS_OPENAT2,
	KARMOR_SYS_CREAT,
	KARMOR_SYS_SOCKET,
	KARMOR_SYS_CONNECT,
	KARMOR_SYS_ACCEPT,
	KARMOR_SYS_ACCEPT4,
	KARMOR_SYS_BIND,
	KARMOR_SYS_UNLINK,
	KARMOR_SYS_UNLINKAT,
	KARMOR_SYS_RMDIR,
	KARMOR_SYS_CHOWN,
	KARMOR_SYS_FCHOWNAT,
	KARMOR_SYS_SETUID,
	KARMOR_SYS_SETGID,
	KARMOR_SYS_PTRACE,
	KARMOR_SYS_MOUNT,
	KARMOR_SYS_UMOUNT2,
	KARMOR_SYS_MAX,
};

/*
 * Strings after the body, in this order; a zero length means absent. The event's own
 * strings come first so a program can drop noise before it spends work on the context.
 */
enum karmor_str {
	KARMOR_STR_PATH = 0, /* the event's path: opened file, exec'd name, syscall path */
	KARMOR_STR_AUX = 1, /* exec: argv (NUL-separated); mount: fstype; else the dirfd's path */
	KARMOR_STR_AUX2 = 2, /* mount: the source */
	KARMOR_STR_EXE = 3, /* process context: executable (walked) */
	KARMOR_STR_CWD = 4, /* process context: working directory (walked) */
	KARMOR_STR_TTY = 5, /* process context: controlling terminal name, e.g. "pts0" */
	KARMOR_STR_MAX = 6,
};

/* hdr.flags */
#define KARMOR_F_CTX (1 << 0) /* EXE/CWD/TTY present: the process context changed */
#define KARMOR_F_TRUNC (1 << 1) /* a string was cut (too deep, too long, out of room) */
#define KARMOR_F_ASYNC (1 << 2) /* completion seen later; identity is the initiator's */

/* Bounds. A walked path has at most KARMOR_PATH_DEPTH components. */
#define KARMOR_PATH_DEPTH 40
#define KARMOR_NAME_MAX 256 /* NAME_MAX + NUL */
#define KARMOR_STR_LIMIT 4096 /* one string, PATH_MAX */
#define KARMOR_ARGV_MAX 1024 /* argv bytes captured per exec */
#define KARMOR_TTY_MAX 64
#define KARMOR_NOISE_MAX 8 /* noise directories and noise prefixes, each */
#define KARMOR_NOISE_STR 32

struct karmor_hdr {
	__u64 ts_ns; /* CLOCK_BOOTTIME; user space adds the wall-clock offset */
	__s64 retval; /* syscall result, -errno on failure; EXIT: exit status */
	__u16 kind; /* enum karmor_event_kind */
	__u16 flags; /* KARMOR_F_* */
	__u32 pid; /* thread id */
	__u32 tgid;
	__u32 ppid; /* real parent's tgid */
	__u32 uid;
	__u32 gid;
	char comm[16];
	__u16 str_len[KARMOR_STR_MAX];
	__u16 str_walked; /* bit i: string i is a walked path */
	__u16 syscall; /* enum karmor_syscall */
};

struct karmor_exec {
	__u32 file_uid; /* owner of the executable's inode */
	__u32 old_pid; /* thread id before exec (a non-leader thread may exec) */
};

struct karmor_fork {
	__u32 child_pid;
	__u32 child_tgid;
};

struct karmor_exit {
	__u32 code; /* raw task exit_code: (status << 8) | signal */
	__u32 _pad;
};

struct karmor_open {
	__u32 flags; /* open(2) flags: of the struct file on success, as asked on failure */
	__u32 file_uid; /* owner of the inode; (u32)-1 when the open failed */
	__u32 mode; /* inode mode (type and permissions); 0 when the open failed */
	__s32 dirfd; /* as passed; AT_FDCWD (-100) for open/creat */
};

struct karmor_socket {
	__s32 family;
	__s32 type; /* without SOCK_NONBLOCK / SOCK_CLOEXEC */
	__s32 protocol;
	__s32 fd;
};

/* CONNECT, ACCEPT, BIND. Addresses in network byte order, ports in host order. */
struct karmor_conn {
	__u16 family;
	__u16 type;
	__u16 protocol;
	__u16 sport;
	__u16 dport;
	__u16 _pad;
	__s32 fd;
	__u8 saddr[16]; /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
};

struct karmor_cap {
	__s32 cap; /* CAP_* */
	__u32 _pad;
};

struct karmor_sys {
	__s32 dirfd; /* unlinkat, fchownat; AT_FDCWD otherwise */
	__u32 _pad;
	__u64 arg[3]; /* see bpf/README.md per syscall: uids, gids, flags, ptrace request/pid */
};

/* Load-time configuration (.rodata, written before load). */
struct karmor_noise_dir {
	__u64 dev; /* kernel encoding: major << 20 | minor */
	__u64 ino;
};

struct karmor_config {
	__u32 self_tgid; /* the agent itself: never reported */
	__u32 wakeup_bytes; /* wake the reader only once this much data waits */
	__u32 noise_dirs; /* entries used in noise_dir */
	__u32 noise_strs; /* entries used in noise_str */
	struct karmor_noise_dir noise_dir[KARMOR_NOISE_MAX];
	__u8 noise_str_len[KARMOR_NOISE_MAX];
	char noise_str[KARMOR_NOISE_MAX][KARMOR_NOISE_STR];
};

_Static_assert(sizeof(struct karmor_hdr) == 72, "karmor_hdr size is ABI");
_Static_assert(sizeof(struct karmor_exec) == 8, "karmor_exec size is ABI");
_Static_assert(sizeof(struct karmor_fork) == 8, "karmor_fork size is ABI");
_Static_assert(sizeof(struct karmor_exit) == 8, "karmor_exit size is ABI");
_Static_assert(sizeof(struct karmor_open) == 16, "karmor_open size is ABI");
_Static_assert(sizeof(struct karmor_socket) == 16, "karmor_socket size is ABI");
_Static_assert(sizeof(struct karmor_conn) == 48, "karmor_conn size is ABI");
_Static_assert(sizeof(struct karmor_cap) == 8, "karmor_cap size is ABI");
_Static_assert(sizeof(struct karmor_sys) == 32, "karmor_sys size is ABI");
_Static_assert(sizeof(struct karmor_config) == 408, "karmor_config size is ABI");

#endif /* KARMOR_H */
