// SPDX-License-Identifier: GPL-2.0-only
/*
 * The object's licence, and a barrier for user space: updating lsm_barrier (a map of maps)
 * returns only after every BPF program that was running has finished (the kernel waits an
 * RCU grace period), so a rule bank just switched away from is no longer read by anyone and
 * may be cleared.
 */
#include "lsm_maps.h"

char LICENSE[] SEC("license") = "GPL";

struct lsm_barrier_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} lsm_barrier_in SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 1);
	__array(values, struct lsm_barrier_inner);
} lsm_barrier SEC(".maps") = {
	.values = { [0] = &lsm_barrier_in },
};
