/* SPDX-License-Identifier: GPL-2.0-only */
/* The whole judgement of one access to a path (exec, open, truncate, unlink, rename). */
#ifndef KARMOR_LSM_JUDGE_H
#define KARMOR_LSM_JUDGE_H

#include "lsm_event.h"

/* What the agent's resolver thread opens is recorded (lsm_resolve): user space learns the
 * (s_dev, i_ino) the kernel will see for a path it is about to put in a key. */
static __always_inline void lsm__record_resolve(struct file *f)
{
	struct karmor_lsm_resolve *r;
	struct inode *inode;
	__u32 zero = 0;

	r = bpf_map_lookup_elem(&lsm_resolve, &zero);
	if (!r || r->done || r->tid != (__u32)bpf_get_current_pid_tgid())
		return;
	inode = BPF_CORE_READ(f, f_inode);
	r->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	r->ino = BPF_CORE_READ(inode, i_ino);
	r->done = 1; /* the first open wins (overlayfs opens the real file after its own) */
}

/* A hook's own pointer argument as a plain number, as the global subprograms take them. */
static __always_inline void *lsm__untyped(const void *p)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), &p);
	return (void *)v;
}

/*
 * Judges an access by the current task to the file (d, vm) for `op` (process or file rules).
 * `write`: the access changes the file. Returns 0 or -EACCES; sends an event when a rule
 * blocked or audited it or the default posture spoke.
 */
static __always_inline int lsm__path(__u16 hook, __u32 op, struct dentry *d, struct vfsmount *vm,
				     bool write, __u32 open_flags, struct file *resolve_file)
{
	struct task_struct *task = bpf_get_current_task_btf();
	const struct karmor_lsm_cfg *cfg;
	struct klsm_walk w = {};
	struct klsm_scratch *s;
	struct inode *inode;
	__u32 opflags = 0;
	bool agent = false;
	bool deny;

	cfg = lsm__begin(task, op, &w.c, &opflags, &agent);
	if (!cfg) {
		if (agent && resolve_file)
			lsm__record_resolve(resolve_file);
		return 0;
	}
	inode = BPF_CORE_READ(d, d_inode);
	w.c.write = write;
	w.c.owner = inode && BPF_CORE_READ(inode, i_uid.val) == (__u32)bpf_get_current_uid_gid();
	match__scopes(&w, cfg, opflags, task);
	match__path(&w, opflags, d, vm);
	deny = match__decide(&w.c, opflags, KARMOR_LSM_CAT_FILE);
	if (!w.c.nhits && !w.c.posture)
		return 0;
	s = ev__begin(&w.c, task, hook, deny ? -EACCES : 0, cfg->generation);
	if (s) {
		s->ev.open_flags = open_flags;
		ev__target(s, d, vm);
		ev__send(s, task);
	}
	return deny ? -EACCES : 0;
}

#endif /* KARMOR_LSM_JUDGE_H */
