/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Sending one BPF-LSM decision: ev__begin (fixed part from the decision), the hook's own
 * fields and path, ev__send (process context, ring buffer, drop counter). Only decisions that
 * block or audit are sent, so every event carries the full context: user space keeps no
 * process table for them.
 */
#ifndef KARMOR_LSM_EVENT_H
#define KARMOR_LSM_EVENT_H

#include "lsm_match.h"

/* Wake the reader only once this much waits; its poll timeout bounds the latency otherwise. */
#define LSM_WAKEUP_BYTES (64 * 1024)

static __always_inline struct klsm_scratch *ev__begin(struct klsm_ctx *c, struct task_struct *task,
						     __u16 hook, int retval, __u32 generation)
{
	struct karmor_lsm_event *e;
	struct klsm_scratch *s;
	struct pt_regs *regs;
	__u32 zero = 0;
	__u64 id, ugid;
	int i;

	s = bpf_map_lookup_elem(&lsm_scratch, &zero);
	if (!s)
		return NULL;
	e = &s->ev;
	__builtin_memset(e, 0, sizeof(*e));
	id = bpf_get_current_pid_tgid();
	ugid = bpf_get_current_uid_gid();
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->retval = retval;
	e->hook = hook;
	e->op = c->op;
	e->posture = c->posture;
	e->generation = generation;
	e->flags = (c->write ? KARMOR_LSM_E_WRITE : 0) | (c->owner ? KARMOR_LSM_E_OWNER : 0) |
		   (c->nhits > KARMOR_LSM_HITS ? KARMOR_LSM_E_MORE : 0) |
		   (c->protect ? KARMOR_LSM_E_PROTECTED : 0);
	e->pid = (__u32)id;
	e->tgid = id >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)ugid;
	e->gid = ugid >> 32;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	e->syscall_nr = regs ? (__s32)BPF_CORE_READ(regs, orig_ax) : -1;
	e->nhits = c->nhits;
	for (i = 0; i < KARMOR_LSM_HITS; i++) {
		e->rule_id[i] = c->id[i];
		e->action[i] = c->action[i];
	}
	e->file_uid = (__u32)-1;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	s->off = sizeof(*e);
	return s;
}

/* Appends the path of (d, vm) as string `slot`: components leaf first, NUL-terminated. */
static __always_inline void ev__walk(struct klsm_scratch *s, int slot, struct dentry *d, struct vfsmount *vm)
{
	struct mount *mnt = lsm__real_mount(vm);
	struct dentry *mnt_root = BPF_CORE_READ(vm, mnt_root);
	__u32 start = s->off;
	struct dentry *up;
	long n;
	__u32 o;
	int i;

	for (i = 0; i < KARMOR_LSM_DEPTH; i++) {
		if (d == mnt_root) {
			struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);

			if (parent == mnt)
				break;
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = parent;
			mnt_root = BPF_CORE_READ(mnt, mnt.mnt_root);
			continue;
		}
		up = BPF_CORE_READ(d, d_parent);
		if (!up || up == d)
			break;
		o = s->off;
		if (o > LSM_REC_LIMIT || o - start > KARMOR_LSM_STR_LIMIT - KARMOR_NAME_MAX) {
			s->ev.flags |= KARMOR_LSM_E_TRUNC;
			break;
		}
		n = bpf_probe_read_kernel_str(&s->data[o & LSM_OFF_MASK], KARMOR_NAME_MAX,
					      BPF_CORE_READ(d, d_name.name));
		if (n > 0)
			s->off = o + n;
		d = up;
	}
	if (i == KARMOR_LSM_DEPTH)
		s->ev.flags |= KARMOR_LSM_E_TRUNC;
	s->ev.str_len[slot & 7] = s->off - start;
	s->ev.str_walked |= 1 << slot;
}

static __always_inline void ev__file_path(int slot, struct file *f)
{
	if (f)
		klsm_event_path(slot, (__u64)BPF_CORE_READ(f, f_path.dentry), (__u64)BPF_CORE_READ(f, f_path.mnt));
}

/* The file acted on: path and owner. */
static __always_inline void ev__target(struct klsm_scratch *s, struct dentry *d, struct vfsmount *vm)
{
	struct inode *inode = BPF_CORE_READ(d, d_inode);

	if (inode) {
		s->ev.file_uid = BPF_CORE_READ(inode, i_uid.val);
		s->ev.file_mode = BPF_CORE_READ(inode, i_mode);
	}
	klsm_event_path(KARMOR_LSM_STR_PATH, (__u64)d, (__u64)vm);
}

/* Process context, then out to the ring buffer; a full ring is counted, never silent. */
static __always_inline void ev__send(struct klsm_scratch *s, struct task_struct *task)
{
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	struct tty_struct *tty = BPF_CORE_READ(task, signal, tty);
	__u64 flags;
	__u32 size, o, zero = 0;
	__u64 *n;
	long len;

	ev__file_path(KARMOR_LSM_STR_EXE, BPF_CORE_READ(task, mm, exe_file));
	ev__file_path(KARMOR_LSM_STR_PEXE, BPF_CORE_READ(task, real_parent, mm, exe_file));
	if (fs)
		klsm_event_path(KARMOR_LSM_STR_CWD, (__u64)BPF_CORE_READ(fs, pwd.dentry),
				(__u64)BPF_CORE_READ(fs, pwd.mnt));
	o = s->off;
	if (tty && o <= LSM_REC_LIMIT) {
		len = bpf_probe_read_kernel_str(&s->data[o & LSM_OFF_MASK], KARMOR_TTY_MAX,
						__builtin_preserve_access_index(&tty->name));
		if (len > 1) {
			s->off = o + len - 1;
			s->ev.str_len[KARMOR_LSM_STR_TTY] = len - 1;
		}
	}
	size = s->off;
	if (size > LSM_BUF_SIZE)
		return;
	flags = bpf_ringbuf_query(&lsm_events, BPF_RB_AVAIL_DATA) >= LSM_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP :
										      BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&lsm_events, s->data, size, flags)) {
		n = bpf_map_lookup_elem(&lsm_drops, &zero);
		if (n)
			*n += 1;
	}
}

#endif /* KARMOR_LSM_EVENT_H */
