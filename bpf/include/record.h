/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Assembling and sending one record: rec__begin (filter the agent, fill the header),
 * the body and strings (path.h), rec__context (exe/cwd/tty, only when they changed
 * since this process's last record), rec__submit (ring buffer, drop counter).
 */
#ifndef KARMOR_RECORD_H
#define KARMOR_RECORD_H

#include "path.h"

#define PF_KTHREAD 0x00200000

/* The identity of the current task, as every record starts. */
static __always_inline void hdr__fill(struct karmor_hdr *h, struct task_struct *task, __u64 id,
				      __u16 kind, __u16 syscall)
{
	__u64 ugid = bpf_get_current_uid_gid();

	h->ts_ns = bpf_ktime_get_boot_ns();
	h->retval = 0;
	h->kind = kind;
	h->flags = 0;
	h->pid = (__u32)id;
	h->tgid = id >> 32;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = (__u32)ugid;
	h->gid = ugid >> 32;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
	__builtin_memset(h->str_len, 0, sizeof(h->str_len));
	h->str_walked = 0;
	h->syscall = syscall;
}

static __always_inline bool rec__is_self(__u64 id)
{
	return (__u32)(id >> 32) == karmor_cfg.self_tgid;
}

static __always_inline struct scratch *rec__start(void *area, struct task_struct *task, __u16 kind,
						  __u16 syscall, __u32 body_size)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct scratch *s;
	__u32 zero = 0;

	if (rec__is_self(id))
		return NULL;
	s = bpf_map_lookup_elem(area, &zero);
	if (!s)
		return NULL;
	s->owner = id;
	hdr__fill(&s->rec.hdr, task, id, kind, syscall);
	__builtin_memset(&s->rec.conn, 0, sizeof(s->rec.conn)); /* the largest body */
	s->off = sizeof(s->rec.hdr) + body_size;
	s->ctx_dirty = 0;
	return s;
}

/* A record from a tracepoint program. */
static __always_inline struct scratch *rec__begin(struct task_struct *task, __u16 kind, __u16 syscall,
						  __u32 body_size)
{
	return rec__start(&scratch, task, kind, syscall, body_size);
}

/* A record from a cgroup program (see scratch_cg in maps.h). */
static __always_inline struct scratch *rec__begin_cg(struct task_struct *task, __u16 kind, __u16 syscall,
						     __u32 body_size)
{
	return rec__start(&scratch_cg, task, kind, syscall, body_size);
}

/*
 * Starts a record on behalf of an earlier one (an asynchronous completion): the identity
 * is the initiator's, saved in `h`, not that of whichever task runs now.
 */
static __always_inline struct scratch *rec__resume(const struct karmor_hdr *h, __u16 kind, __u32 body_size)
{
	struct scratch *s;
	__u32 zero = 0;

	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return NULL;
	s->owner = bpf_get_current_pid_tgid();
	s->rec.hdr = *h;
	s->rec.hdr.ts_ns = bpf_ktime_get_boot_ns();
	s->rec.hdr.kind = kind;
	s->rec.hdr.flags = KARMOR_F_ASYNC;
	__builtin_memset(s->rec.hdr.str_len, 0, sizeof(s->rec.hdr.str_len));
	s->rec.hdr.str_walked = 0;
	__builtin_memset(&s->rec.conn, 0, sizeof(s->rec.conn));
	s->off = sizeof(*h) + body_size;
	s->ctx_dirty = 0;
	return s;
}

/*
 * Adds the process context (EXE, CWD, TTY) when it differs from what this tgid's last
 * record carried, or always with `force`. User space keeps it in its process table, so
 * most records carry none of it.
 */
static __always_inline void rec__context(struct scratch *s, struct task_struct *task, bool force)
{
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	struct tty_struct *tty = BPF_CORE_READ(task, signal, tty);
	struct proc_key *old;
	struct proc_key k;
	__u32 tgid = s->rec.hdr.tgid;

	k.start_time = BPF_CORE_READ(task, group_leader, start_time);
	k.exe_file = (__u64)exe;
	k.pwd_dentry = (__u64)BPF_CORE_READ(fs, pwd.dentry);
	k.pwd_mnt = (__u64)BPF_CORE_READ(fs, pwd.mnt);
	k.tty = (__u64)tty;
	if (!force) {
		old = bpf_map_lookup_elem(&proc_ctx, &tgid);
		if (old && old->start_time == k.start_time && old->exe_file == k.exe_file &&
		    old->pwd_dentry == k.pwd_dentry && old->pwd_mnt == k.pwd_mnt && old->tty == k.tty)
			return;
	}
	if (exe)
		rec__walk_path(s, KARMOR_STR_EXE, __builtin_preserve_access_index(&exe->f_path), false);
	if (k.pwd_dentry)
		rec__walk(s, KARMOR_STR_CWD, (void *)k.pwd_dentry, (void *)k.pwd_mnt, false);
	if (tty)
		rec__kernel_str(s, KARMOR_STR_TTY, __builtin_preserve_access_index(&tty->name),
				KARMOR_TTY_MAX);
	s->rec.hdr.flags |= KARMOR_F_CTX;
	s->ctx_new = k;
	s->ctx_dirty = 1;
}

static __always_inline void rec__count_drop(__u32 category)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &category);

	if (n)
		*n += 1;
}

/*
 * Sends the record. A record that cannot go out (full ring buffer, assembly area taken
 * over meanwhile) is counted, never silent. True when sent.
 */
static __always_inline bool rec__submit(struct scratch *s, __u32 category)
{
	__u64 flags = 0; /* kernel default: wake the reader only if it had caught up */
	__u32 size = s->off;

	if (s->owner != bpf_get_current_pid_tgid()) {
		s->owner = 0; /* the one that took it over must not send its record either */
		rec__count_drop(category);
		return false;
	}
	if (size > KARMOR_BUF_SIZE)
		return false;
	if (karmor_cfg.wakeup_bytes)
		flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= karmor_cfg.wakeup_bytes ?
				BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, s->data, size, flags)) {
		rec__count_drop(category);
		return false;
	}
	if (s->ctx_dirty)
		bpf_map_update_elem(&proc_ctx, &s->rec.hdr.tgid, &s->ctx_new, BPF_ANY);
	return true;
}

#endif /* KARMOR_RECORD_H */
