// SPDX-License-Identifier: GPL-2.0-only
/*
 * The floor the benchmarks report beside the monitor's figures: an empty program on a
 * syscall tracepoint costs what the syscall slow path costs, before any work is done.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tracepoint/syscalls/sys_exit_openat")
int karmor_floor_exit_openat(void *ctx)
{
	return 0;
}
