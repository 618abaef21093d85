/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * Network attribution: which process sent a flow the firewall logged. nftables cannot see
 * processes; cgroup socket hooks can. connect4/6 and sendmsg4/6 record, per destination,
 * the process that asked for it; sockops adds the source port once TCP has chosen it.
 * karmor_host/firewall/attribution.py mirrors these structs (a unit test compares the
 * mirror with the object's BTF). Every program returns 1: they watch, they never refuse.
 */
#ifndef KARMOR_NETATTR_H
#define KARMOR_NETATTR_H

#include "common.h"

#define NETATTR_EXE_LEN 256
#define NETATTR_COMP_MAX 64 /* longest path component copied; longer ones are cut */
#define NETATTR_DEPTH 24 /* path components walked, mount crossings included */
#define NETATTR_FLOWS 8192

#ifndef IPPROTO_TCP
#define IPPROTO_TCP 6
#endif

/* Keys and values are part of the ABI with user space. */
struct netattr_key {
	__u64 netns; /* bpf_get_netns_cookie: flows of other namespaces never match */
	__u8 daddr[16]; /* IPv4: the first 4 bytes (v4-mapped IPv6 is stored as IPv4) */
	__u16 dport; /* host byte order */
	__u16 sport; /* host byte order; 0 when the socket had no port yet */
	__u8 family; /* AF_INET / AF_INET6 */
	__u8 proto; /* IPPROTO_* */
	__u8 pad[2];
};
_Static_assert(sizeof(struct netattr_key) == 32, "netattr_key ABI");

#define NETATTR_F_EXE_TRUNC 1

struct netattr_owner {
	__u64 ts_ns; /* bpf_ktime_get_boot_ns() at the hook */
	__u64 cookie; /* socket cookie */
	__u32 tgid;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u16 exe_len; /* bytes used in exe */
	__u8 flags;
	__u8 pad;
	char comm[16];
	char exe[NETATTR_EXE_LEN]; /* components leaf first, each NUL-terminated */
};
_Static_assert(sizeof(struct netattr_owner) == 312, "netattr_owner ABI");

enum netattr_counter {
	NETATTR_C_RECORDED = 0,
	NETATTR_C_UPDATE_FAILED = 1,
	NETATTR_C_EXE_TRUNC = 2,
	NETATTR_C_EXACT = 3, /* sockops added the source port */
	NETATTR_C_MAX = 4,
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NETATTR_FLOWS);
	__type(key, struct netattr_key);
	__type(value, struct netattr_owner);
} netattr_flows SEC(".maps") __weak;

/* Values are built here, not on the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netattr_owner);
} netattr_scratch SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NETATTR_C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} netattr_counters SEC(".maps") __weak;

static __always_inline void netattr__count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&netattr_counters, &which);

	if (c)
		*c += 1;
}

#endif /* KARMOR_NETATTR_H */
