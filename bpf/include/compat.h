/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernel types that differ between versions, as CO-RE "flavours" (the ___suffix is
 * ignored when libbpf matches them against the running kernel's BTF). Each says what
 * motivates it; programs needing an absent type are switched off with set_autoload.
 */
#ifndef KARMOR_COMPAT_H
#define KARMOR_COMPAT_H

/*
 * capability/cap_capable appeared in Linux 6.14; declared here so the monitor builds
 * against the BTF of older kernels too (the program is not loaded where the tracepoint
 * is missing: karmor_host/kernel/tracefs.py checks).
 */
struct trace_event_raw_cap_capable___karmor {
	struct trace_entry ent;
	const void *cred;
	void *target_ns;
	const void *capable_ns;
	int cap;
	int ret;
} __attribute__((preserve_access_index));

/*
 * sched_process_exit gained its own event class with `group_dead` in Linux 6.15; before
 * that the whole-process exit is recognised by signal->live having dropped to zero.
 */
struct trace_event_raw_sched_process_exit___karmor {
	struct trace_entry ent;
	bool group_dead;
} __attribute__((preserve_access_index));

#endif /* KARMOR_COMPAT_H */
