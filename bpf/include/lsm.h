/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * The ABI between the BPF-LSM enforcer's programs (bpf/lsm/) and
 * karmor_host/enforce/bpflsm/ (abi.py mirrors it; a unit test compares the mirror with the
 * BTF of the built object). Same rules as karmor.h: fixed-width types, explicit padding,
 * every size asserted, bump KARMOR_LSM_ABI_VERSION on any change.
 *
 * Rules live in hash maps whose keys carry a bank (0/1): user space fills the bank that is
 * not live, then flips karmor_lsm_state.bank, so each hook sees the old rule set or the new
 * one, never a mix (docs/bpf-lsm.md, "Updates").
 *
 * Files are keyed by what the kernel itself sees: the (s_dev, i_ino) of the directory that
 * holds them plus their name; directories by their own (s_dev, i_ino). Symlinks are resolved
 * by construction, and a file replaced by rename (sed -i, package upgrades) keeps its key.
 *
 * A decision that blocks or audits is sent on the ring buffer as struct karmor_lsm_event
 * followed by its strings (enum karmor_lsm_str order; a walked string is NUL-terminated
 * path components, leaf first, as in karmor.h).
 */
#ifndef KARMOR_LSM_H
#define KARMOR_LSM_H

#define KARMOR_LSM_ABI_VERSION 1

#define KARMOR_LSM_NAME 64 /* bytes of a file name a key holds, NUL included */
#define KARMOR_LSM_REFS 8 /* rules per key */
#define KARMOR_LSM_HITS 8 /* rule ids one event carries */
#define KARMOR_LSM_SCOPES 4 /* scopes one decision looks in: everyone + fromSource scopes */
#define KARMOR_LSM_DEPTH 32 /* directory levels looked at above a file */
#define KARMOR_LSM_STR_LIMIT 1024 /* bytes of one string in an event */

/* What a rule is about (key.op, event.op). The values index karmor_lsm_cfg.op_flags. */
enum karmor_lsm_op {
	KARMOR_LSM_OP_PROCESS = 0,
	KARMOR_LSM_OP_FILE = 1,
	KARMOR_LSM_OP_NETWORK = 2,
	KARMOR_LSM_OP_CAPABILITIES = 3,
	KARMOR_LSM_OP_MAX,
};

/* The hook that decided (event.hook); user space names it SECURITY_<NAME>. */
enum karmor_lsm_hook {
	KARMOR_LSM_HOOK_NONE = 0,
	KARMOR_LSM_HOOK_BPRM_CHECK = 1,
	KARMOR_LSM_HOOK_FILE_OPEN = 2,
	KARMOR_LSM_HOOK_PATH_TRUNCATE = 3,
	KARMOR_LSM_HOOK_PATH_UNLINK = 4,
	KARMOR_LSM_HOOK_PATH_RENAME = 5,
	KARMOR_LSM_HOOK_SOCKET_CREATE = 6,
	KARMOR_LSM_HOOK_CAPABLE = 7,
	KARMOR_LSM_HOOK_MAX,
};

enum karmor_lsm_action {
	KARMOR_LSM_NONE = 0,
	KARMOR_LSM_ALLOW = 1,
	KARMOR_LSM_AUDIT = 2,
	KARMOR_LSM_BLOCK = 3,
	KARMOR_LSM_PROTECT = 4, /* the agent's own file: a read or exec of it is never denied */
};

/* Protocol names a socket satisfies (docs/alerts.md, "Protocols"): key.code of network rules. */
enum karmor_lsm_proto {
	KARMOR_LSM_PROTO_ALL = 0,
	KARMOR_LSM_PROTO_TCP,
	KARMOR_LSM_PROTO_UDP,
	KARMOR_LSM_PROTO_ICMP,
	KARMOR_LSM_PROTO_ICMPV6,
	KARMOR_LSM_PROTO_SCTP,
	KARMOR_LSM_PROTO_DCCP,
	KARMOR_LSM_PROTO_PACKET,
	KARMOR_LSM_PROTO_RAW,
	KARMOR_LSM_PROTO_STREAM,
	KARMOR_LSM_PROTO_DGRAM,
	KARMOR_LSM_PROTO_SEQPACKET,
	KARMOR_LSM_PROTO_RDM,
	KARMOR_LSM_PROTO_MAX,
};

/* Strings after an event, in this order; a zero length means absent. */
enum karmor_lsm_str {
	KARMOR_LSM_STR_PATH = 0, /* the file acted on (walked) */
	KARMOR_LSM_STR_EXE = 1, /* the acting executable (walked); for exec: the program calling it */
	KARMOR_LSM_STR_PEXE = 2, /* the parent's executable (walked) */
	KARMOR_LSM_STR_CWD = 3, /* working directory (walked) */
	KARMOR_LSM_STR_TTY = 4, /* controlling terminal name, e.g. "pts0" */
	KARMOR_LSM_STR_MAX = 5,
};

/* karmor_lsm_ref.flags */
#define KARMOR_LSM_RECURSIVE (1 << 0) /* directory rule: any depth, not only direct children */
#define KARMOR_LSM_READ_ONLY (1 << 1)
#define KARMOR_LSM_OWNER_ONLY (1 << 2)

/* karmor_lsm_cfg.op_flags[op] */
#define KARMOR_LSM_F_GLOBAL (1 << 0) /* rules without fromSource exist for this op */
#define KARMOR_LSM_F_SCOPED (1 << 1) /* rules with fromSource exist for this op */
#define KARMOR_LSM_F_FILES (1 << 2) /* exact-file rules exist (process, file) */
#define KARMOR_LSM_F_DIRS (1 << 3) /* directory rules exist (process, file) */
#define KARMOR_LSM_F_CONFINE_ALL (1 << 4) /* the op's category is a whitelist for everyone */
#define KARMOR_LSM_F_CONFINE_SCOPED (1 << 5) /* ... for the processes of some scopes */
#define KARMOR_LSM_F_POSTURE_BLOCK (1 << 6) /* whitelist miss: deny (else audit) */
#define KARMOR_LSM_F_NAMES (1 << 7) /* name-only rules (execname): lsm_files with dev = ino = 0 */

/* karmor_lsm_cfg.flags */
#define KARMOR_LSM_C_SOURCES (1 << 0) /* lsm_srcs has entries */
#define KARMOR_LSM_C_SOURCE_DIRS (1 << 1) /* lsm_srcdirs has entries */

/* Category bits of karmor_lsm_scope.confine: process and file rules form one category. */
#define KARMOR_LSM_CAT_FILE (1 << 0)
#define KARMOR_LSM_CAT_NETWORK (1 << 1)
#define KARMOR_LSM_CAT_CAPABILITIES (1 << 2)

/* event.flags */
#define KARMOR_LSM_E_WRITE (1 << 0) /* the access was judged a write */
#define KARMOR_LSM_E_OWNER (1 << 1) /* the actor owns the file */
#define KARMOR_LSM_E_TRUNC (1 << 2) /* a string was cut */
#define KARMOR_LSM_E_MORE (1 << 3) /* more rules matched than rule_id holds */
#define KARMOR_LSM_E_NOAUDIT (1 << 4) /* capable(): a check the kernel marks noaudit */
#define KARMOR_LSM_E_PROTECTED (1 << 5) /* denial not carried out: the agent's own file */

/* lsm_state[0]. The first 16 bytes (the exempt agent) keep this layout in every ABI version,
 * so that a newer agent can exempt itself under programs an older one left pinned. */
struct karmor_lsm_state {
	__u32 agent_tgid; /* never judged: the agent itself (0: none) */
	__u32 _pad;
	__u64 agent_start; /* its start time in clock ticks (/proc/<pid>/stat field 22) */
	__u32 bank; /* the live bank: 0 or 1 */
	__u32 generation; /* of the live rule set */
	__u64 object_id; /* identity of the object that created these maps */
};

/* lsm_cfg[bank] */
struct karmor_lsm_cfg {
	__u32 generation;
	__u32 flags; /* KARMOR_LSM_C_* */
	__u32 op_flags[KARMOR_LSM_OP_MAX]; /* KARMOR_LSM_F_* */
};

/* lsm_resolve[0]: the next file the thread `tid` (of the agent) opens is recorded here, which
 * is how user space learns the (s_dev, i_ino) the kernel uses for a path. */
struct karmor_lsm_resolve {
	__u32 tid;
	__u32 done;
	__u32 dev;
	__u32 _pad;
	__u64 ino;
};

/* lsm_dirs (directory rules) and lsm_srcdirs (source directories; op and scope 0). */
struct karmor_lsm_dir_key {
	__u8 bank;
	__u8 op;
	__u16 _pad;
	__u32 scope;
	__u32 dev;
	__u32 _pad2;
	__u64 ino;
};

/* lsm_files (exact-file rules) and lsm_srcs (source executables; op and scope 0):
 * the holding directory and the name. Names longer than KARMOR_LSM_NAME - 1 bytes are
 * compared on that prefix and their full length. */
struct karmor_lsm_file_key {
	__u8 bank;
	__u8 op;
	__u16 name_len;
	__u32 scope;
	__u32 dev;
	__u32 _pad;
	__u64 ino;
	char name[KARMOR_LSM_NAME];
};

/* lsm_codes: network rules (code: enum karmor_lsm_proto) and capability rules (code: CAP_*). */
struct karmor_lsm_code_key {
	__u8 bank;
	__u8 op;
	__u16 code;
	__u32 scope;
};

struct karmor_lsm_ref {
	__u32 rule_id;
	__u8 action; /* enum karmor_lsm_action */
	__u8 flags; /* KARMOR_LSM_RECURSIVE | READ_ONLY | OWNER_ONLY */
	__u16 _pad;
};

/* The value of lsm_dirs, lsm_files and lsm_codes: the rules on one key. */
struct karmor_lsm_refs {
	__u32 count;
	__u32 _pad;
	struct karmor_lsm_ref ref[KARMOR_LSM_REFS];
};

/* The value of lsm_srcs: the scope of the rules whose fromSource names this executable. */
struct karmor_lsm_scope {
	__u32 scope;
	__u32 confine; /* KARMOR_LSM_CAT_* whitelists that confine this source */
};

/* The value of lsm_srcdirs: scopes of a source directory, for direct children and at any depth. */
struct karmor_lsm_srcdir {
	struct karmor_lsm_scope direct;
	struct karmor_lsm_scope recursive;
};

/* One decision that blocked or audited; its strings follow. */
struct karmor_lsm_event {
	__u64 ts_ns; /* CLOCK_BOOTTIME */
	__s32 retval; /* what the hook returned: 0, -EACCES, -EPERM */
	__u16 hook; /* enum karmor_lsm_hook */
	__u8 op; /* enum karmor_lsm_op */
	__u8 posture; /* enum karmor_lsm_action: a DefaultPosture decision (NONE, AUDIT, BLOCK) */
	__u32 generation; /* of the rule set that decided */
	__u32 flags; /* KARMOR_LSM_E_* */
	__u32 pid;
	__u32 tgid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__s32 syscall_nr; /* x86-64 number of the syscall in progress, -1 if none */
	__u32 nhits; /* rules that matched (rule_id holds the first KARMOR_LSM_HITS) */
	__u32 rule_id[KARMOR_LSM_HITS];
	__u8 action[KARMOR_LSM_HITS]; /* enum karmor_lsm_action of each rule_id */
	__u32 file_uid; /* owner of the file, (u32)-1 when there is none */
	__u32 file_mode; /* inode mode */
	__u32 open_flags; /* file_open: the file's f_flags */
	__s32 family; /* socket_create */
	__s32 type;
	__s32 protocol;
	__s32 cap; /* capable */
	__u32 cap_opts;
	char comm[16];
	__u16 str_len[KARMOR_LSM_STR_MAX];
	__u16 str_walked; /* bit i: string i is a walked path */
};

_Static_assert(sizeof(struct karmor_lsm_state) == 32, "karmor_lsm_state size is ABI");
_Static_assert(sizeof(struct karmor_lsm_cfg) == 24, "karmor_lsm_cfg size is ABI");
_Static_assert(sizeof(struct karmor_lsm_resolve) == 24, "karmor_lsm_resolve size is ABI");
_Static_assert(sizeof(struct karmor_lsm_dir_key) == 24, "karmor_lsm_dir_key size is ABI");
_Static_assert(sizeof(struct karmor_lsm_file_key) == 88, "karmor_lsm_file_key size is ABI");
_Static_assert(sizeof(struct karmor_lsm_code_key) == 8, "karmor_lsm_code_key size is ABI");
_Static_assert(sizeof(struct karmor_lsm_ref) == 8, "karmor_lsm_ref size is ABI");
_Static_assert(sizeof(struct karmor_lsm_refs) == 72, "karmor_lsm_refs size is ABI");
_Static_assert(sizeof(struct karmor_lsm_scope) == 8, "karmor_lsm_scope size is ABI");
_Static_assert(sizeof(struct karmor_lsm_srcdir) == 16, "karmor_lsm_srcdir size is ABI");
_Static_assert(sizeof(struct karmor_lsm_event) == 152, "karmor_lsm_event size is ABI");

#endif /* KARMOR_LSM_H */
