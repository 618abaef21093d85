/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Maps shared by the units of lsm.bpf.o (the BPF-LSM enforcer). Definitions are __weak so
 * every unit can include them; the static linker keeps one of each. User space pins them all
 * under /sys/fs/bpf/karmor/lsm/ and sizes the rule maps before load.
 */
#ifndef KARMOR_LSM_MAPS_H
#define KARMOR_LSM_MAPS_H

#include "common.h"
#include "lsm.h"

/* One event under assembly: the fixed part, then the strings. Writes of one component go to
 * data[off & LSM_OFF_MASK] and are at most KARMOR_NAME_MAX long, so they stay in bounds. */
#define LSM_BUF_SIZE 8192
#define LSM_OFF_MASK (LSM_BUF_SIZE / 2 - 1)
#define LSM_REC_LIMIT (LSM_BUF_SIZE / 2 - KARMOR_NAME_MAX)

const volatile __u32 karmor_lsm_abi_version __weak = KARMOR_LSM_ABI_VERSION;

struct klsm_scratch {
	__u32 off;
	__u32 _pad;
	union {
		__u8 data[LSM_BUF_SIZE];
		struct karmor_lsm_event ev;
		struct {
			enum karmor_lsm_op op;
			enum karmor_lsm_hook hook;
			enum karmor_lsm_action action;
			enum karmor_lsm_proto proto;
			enum karmor_lsm_str str;
		} abi_enums; /* so that the enums are in the object's BTF */
	};
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct karmor_lsm_state);
	__uint(max_entries, 1);
} lsm_state __weak SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct karmor_lsm_cfg);
	__uint(max_entries, 2);
} lsm_cfg __weak SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct karmor_lsm_resolve);
	__uint(max_entries, 1);
} lsm_resolve __weak SEC(".maps");

/* Rule maps: both banks live here, so max_entries is twice the entries of one rule set. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct karmor_lsm_dir_key);
	__type(value, struct karmor_lsm_refs);
	__uint(max_entries, 65536);
} lsm_dirs __weak SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct karmor_lsm_file_key);
	__type(value, struct karmor_lsm_refs);
	__uint(max_entries, 65536);
} lsm_files __weak SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct karmor_lsm_code_key);
	__type(value, struct karmor_lsm_refs);
	__uint(max_entries, 16384);
} lsm_codes __weak SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct karmor_lsm_file_key);
	__type(value, struct karmor_lsm_scope);
	__uint(max_entries, 16384);
} lsm_srcs __weak SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct karmor_lsm_dir_key);
	__type(value, struct karmor_lsm_srcdir);
	__uint(max_entries, 16384);
} lsm_srcdirs __weak SEC(".maps");

/* Per task: the fromSource scopes its executable is in, for one rule set (generation), so that
 * the executable is looked up once, not at every access. */
struct klsm_task_scopes {
	__u64 exe; /* the struct file * they were found for */
	__u32 generation;
	__u32 nscopes;
	__u32 scope[KARMOR_LSM_SCOPES];
	__u32 confine;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct klsm_task_scopes);
} lsm_task_scopes __weak SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
} lsm_events __weak SEC(".maps");

/* Events that did not fit in the ring buffer (per CPU). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} lsm_drops __weak SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct klsm_scratch);
	__uint(max_entries, 1);
} lsm_scratch __weak SEC(".maps");

#endif /* KARMOR_LSM_MAPS_H */
