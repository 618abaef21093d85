/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Maps and load-time configuration shared by the units of one object. Definitions are
 * __weak so every unit can include them; the static linker keeps one of each.
 */
#ifndef KARMOR_MAPS_H
#define KARMOR_MAPS_H

#include "common.h"

/* The byte budget of one record under assembly; KARMOR_OFF_MASK keeps writes in bounds. */
#define KARMOR_BUF_SIZE 16384
#define KARMOR_OFF_MASK (KARMOR_BUF_SIZE / 2 - 1)
#define KARMOR_REC_LIMIT (KARMOR_BUF_SIZE / 2 - KARMOR_NAME_MAX) /* stop adding past this */

const volatile __u32 karmor_abi_version __weak = KARMOR_ABI_VERSION;
const volatile struct karmor_config karmor_cfg __weak = {};

/* What a record's process context was made of when last sent, per tgid. */
struct proc_key {
	__u64 start_time; /* tells a recycled tgid apart */
	__u64 exe_file;
	__u64 pwd_dentry;
	__u64 pwd_mnt;
	__u64 tty;
};

/* Per-CPU assembly area. The union names every record type so their BTF is in the object. */
struct scratch {
	__u32 off; /* write cursor in data */
	__u32 ctx_dirty; /* ctx_new goes into proc_ctx once the record is out */
	__u64 owner; /* pid_tgid assembling it: another one here means it was overwritten */
	struct proc_key ctx_new;
	union {
		__u8 data[KARMOR_BUF_SIZE];
		struct {
			struct karmor_hdr hdr;
			union {
				struct karmor_exec exec;
				struct karmor_fork fork;
				struct karmor_exit exit;
				struct karmor_open open;
				struct karmor_socket socket;
				struct karmor_conn conn;
				struct karmor_cap cap;
				struct karmor_sys sys;
			};
		} rec;
		struct {
			enum karmor_event_kind kind;
			enum karmor_category category;
			enum karmor_syscall syscall;
			enum karmor_str str;
		} abi_enums;
	};
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* set by user space before load */
} events __weak SEC(".maps");

/*
 * Two assembly areas: tracepoint programs never nest on a CPU (the kernel skips a second
 * one while one runs), but a cgroup socket program runs with only migration disabled:
 * another task's cgroup program may preempt it, and a softirq may run a tracepoint program
 * on its CPU. So cgroup programs assemble in scratch_cg, and rec__submit drops (and
 * counts) a record whose area changed hands while it was being built.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct scratch);
	__uint(max_entries, 1);
} scratch __weak SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct scratch);
	__uint(max_entries, 1);
} scratch_cg __weak SEC(".maps");

/* Records that did not fit in the ring buffer, per CPU and enum karmor_category. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, KARMOR_CAT_MAX);
} drops __weak SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u32);
	__type(value, struct proc_key);
	__uint(max_entries, 16384);
} proc_ctx __weak SEC(".maps");

/* Non-blocking TCP connects in flight: struct sock * -> the initiator's header. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct karmor_hdr);
	__uint(max_entries, 4096);
} pending_connect __weak SEC(".maps");

#endif /* KARMOR_MAPS_H */
