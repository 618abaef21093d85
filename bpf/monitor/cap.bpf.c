// SPDX-License-Identifier: GPL-2.0-only
/*
 * Capability visibility from capability/cap_capable (Linux 6.14+), which fires on each
 * capability check, allowed (ret 0) or not (-EPERM). Every denial is reported; an allowed
 * check once per process image and capability: the kernel asks CAP_SYS_ADMIN (noaudit) on
 * every mmap of a root process, thousands per second, and the tracepoint no longer says
 * which checks are noaudit. Kernel threads are not reported.
 */
#include "record.h"

struct cap_key {
	__u32 tgid;
	__s32 cap;
};

/* which process image (start time + executable) was last reported using a capability */
struct cap_image {
	__u64 start_time;
	__u64 exe_file;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct cap_key);
	__type(value, struct cap_image);
	__uint(max_entries, 16384);
} cap_seen SEC(".maps");

SEC("tracepoint/capability/cap_capable")
int karmor_cap_capable(struct trace_event_raw_cap_capable___karmor *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct karmor_cap *body;
	struct cap_image img, *seen;
	struct cap_key key;
	struct scratch *s;
	int ret = ctx->ret;

	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return 0;
	key.tgid = bpf_get_current_pid_tgid() >> 32;
	key.cap = ctx->cap;
	if (ret == 0) {
		img.start_time = BPF_CORE_READ(task, group_leader, start_time);
		img.exe_file = (__u64)BPF_CORE_READ(task, mm, exe_file);
		seen = bpf_map_lookup_elem(&cap_seen, &key);
		if (seen && seen->start_time == img.start_time && seen->exe_file == img.exe_file)
			return 0;
	}
	s = rec__begin(task, KARMOR_EV_CAPABLE, KARMOR_SYS_NONE, sizeof(*body));
	if (!s)
		return 0;
	body = &s->rec.cap;
	body->cap = key.cap;
	s->rec.hdr.retval = ret;
	rec__context(s, task, false);
	if (rec__submit(s, KARMOR_CAT_CAPABILITIES) && ret == 0)
		bpf_map_update_elem(&cap_seen, &key, &img, BPF_ANY);
	return 0;
}
