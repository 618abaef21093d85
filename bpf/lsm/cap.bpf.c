// SPDX-License-Identifier: GPL-2.0-only
/*
 * Capability rules at lsm/capable, which runs for every capability check, allowed or not, so
 * the common case returns after two array lookups. Denied: -EPERM ("Operation not
 * permitted"), what the kernel itself answers for a missing capability. Checks the kernel
 * marks noaudit (it probes, e.g. has_capability_noaudit) are judged like the others, but a
 * default-posture decision on one is not reported: the kernel logs none for them either.
 */
#include "lsm_event.h"

#define CAP_OPT_NOAUDIT (1 << 1)

SEC("lsm/capable")
int BPF_PROG(karmor_lsm_capable, const struct cred *cred, struct user_namespace *ns, int cap,
	     unsigned int opts, int ret)
{
	struct task_struct *task;
	const struct karmor_lsm_cfg *cfg;
	struct klsm_walk w = {};
	struct klsm_scratch *s;
	__u32 opflags = 0;
	bool agent = false, deny;

	if (ret)
		return ret;
	task = bpf_get_current_task_btf();
	cfg = lsm__begin(task, KARMOR_LSM_OP_CAPABILITIES, &w.c, &opflags, &agent);
	if (!cfg)
		return 0;
	match__scopes(&w, cfg, opflags, task);
	klsm_code(&w.c, cap);
	deny = match__decide(&w.c, opflags, KARMOR_LSM_CAT_CAPABILITIES);
	if (!w.c.nhits && (!w.c.posture || (opts & CAP_OPT_NOAUDIT)))
		return deny ? -EPERM : 0;
	s = ev__begin(&w.c, task, KARMOR_LSM_HOOK_CAPABLE, deny ? -EPERM : 0, cfg->generation);
	if (s) {
		s->ev.cap = cap;
		s->ev.cap_opts = opts;
		if (opts & CAP_OPT_NOAUDIT)
			s->ev.flags |= KARMOR_LSM_E_NOAUDIT;
		ev__send(s, task);
	}
	return deny ? -EPERM : 0;
}
