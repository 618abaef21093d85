// SPDX-License-Identifier: GPL-2.0-only
/*
 * Capability visibility from capability/cap_capable (Linux 6.14+), which fires on each
 * capability check, allowed (ret 0) or not (-EPERM). Kernel threads are not reported.
 */
#include "record.h"

SEC("tracepoint/capability/cap_capable")
int karmor_cap_capable(struct trace_event_raw_cap_capable___karmor *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct karmor_cap *body;
	struct scratch *s;

	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return 0;
	s = rec__begin(task, KARMOR_EV_CAPABLE, KARMOR_SYS_NONE, sizeof(*body));
	if (!s)
		return 0;
	body = &s->rec.cap;
	body->cap = ctx->cap;
	s->rec.hdr.retval = ctx->ret;
	rec__context(s, task, false);
	rec__submit(s, KARMOR_CAT_CAPABILITIES);
	return 0;
}
