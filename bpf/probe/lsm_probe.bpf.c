// SPDX-License-Identifier: GPL-2.0-only
/*
 * The smallest BPF-LSM program: `karmor-host probe` loads (and never attaches) it to learn
 * whether this kernel accepts LSM programs at all (CONFIG_BPF_LSM, lockdown, "bpf" in lsm=).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("lsm/file_open")
int BPF_PROG(karmor_probe_file_open, struct file *file)
{
	return 0;
}
