// SPDX-License-Identifier: GPL-2.0-only
/*
 * The global subprograms of lsm.bpf.o (declared in lsm_match.h). Global functions are
 * verified once, independently of their callers; their pointer arguments arrive as "memory
 * of the declared size, maybe NULL", hence the NULL checks.
 */
#include "lsm_event.h"

__noinline int klsm_refs(struct klsm_ctx *c, const struct karmor_lsm_refs *v, int direct)
{
	__u32 n, hits;
	int i;

	if (!c || !v)
		return 0;
	n = v->count;
	for (i = 0; i < KARMOR_LSM_REFS; i++) {
		const struct karmor_lsm_ref *r = &v->ref[i];
		__u8 flags, action;
		bool holds;

		if (i >= n)
			break;
		flags = r->flags;
		action = r->action;
		if (!direct && !(flags & KARMOR_LSM_RECURSIVE))
			continue;
		if (action == KARMOR_LSM_PROTECT) {
			if (!c->write)
				c->protect = 1;
			continue;
		}
		/* the access stays inside what readOnly / ownerOnly permit */
		holds = !((flags & KARMOR_LSM_READ_ONLY) && c->write) &&
			!((flags & KARMOR_LSM_OWNER_ONLY) && !c->owner);
		if (action == KARMOR_LSM_ALLOW) {
			if (holds)
				c->allowed = 1;
			continue;
		}
		/* a restricted Block/Audit rule objects only to what goes beyond its limits */
		if ((flags & (KARMOR_LSM_READ_ONLY | KARMOR_LSM_OWNER_ONLY)) && holds)
			continue;
		if (action == KARMOR_LSM_BLOCK)
			c->blocked = 1;
		/* the same rule reached through two scopes appears twice; user space merges them */
		hits = c->nhits;
		if (hits < KARMOR_LSM_HITS) {
			c->id[hits & (KARMOR_LSM_HITS - 1)] = r->rule_id;
			c->action[hits & (KARMOR_LSM_HITS - 1)] = action;
		}
		c->nhits = hits + 1;
	}
	return 0;
}

__noinline int klsm_code(struct klsm_ctx *c, __u32 code)
{
	struct karmor_lsm_code_key k = {};
	__u32 j;

	if (!c)
		return 0;
	k.bank = c->bank;
	k.op = c->op;
	k.code = code;
	for (j = 0; j < KARMOR_LSM_SCOPES; j++) {
		struct karmor_lsm_refs *v;

		if (j >= c->nscopes)
			break;
		k.scope = c->scope[j];
		v = bpf_map_lookup_elem(&lsm_codes, &k);
		if (v)
			klsm_refs(c, v, 1);
	}
	return 0;
}

__noinline int klsm_event_path(int slot, __u64 dentry, __u64 vfsmount)
{
	struct klsm_scratch *s;
	__u32 zero = 0;

	s = bpf_map_lookup_elem(&lsm_scratch, &zero);
	if (!s || !dentry || !vfsmount)
		return 0;
	ev__walk(s, slot, (void *)dentry, (void *)vfsmount);
	return 0;
}
