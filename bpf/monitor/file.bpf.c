// SPDX-License-Identifier: GPL-2.0-only
/*
 * File visibility: open, openat, openat2, creat at sys_exit. On success the path is that
 * of the struct file behind the returned descriptor (symlinks and relative paths already
 * resolved by the kernel); on failure there is no struct file, so the path is the one the
 * caller passed (plus the dirfd's path when it is relative to one) and user space joins a
 * cwd-relative path with the process's cwd. Only sys_exit programs: the arguments are
 * still in the saved user registers, so no sys_enter program (and its cost) is needed.
 */
#include "record.h"

struct open_args {
	long dirfd;
	const char *path;
	__u32 flags;
};

static __always_inline int file__open_exit(struct trace_event_raw_sys_exit *ctx, __u16 syscall,
					   struct open_args *a)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	long ret = ctx->ret;
	struct karmor_open *body;
	struct inode *inode;
	struct scratch *s;
	struct file *file;
	__u32 start;

	s = rec__begin(task, KARMOR_EV_OPEN, syscall, sizeof(*body));
	if (!s)
		return 0;
	s->rec.hdr.retval = ret;
	body = &s->rec.open;
	body->dirfd = a->dirfd;
	file = ret >= 0 ? task__fd_file(task, ret) : NULL;
	if (file) {
		if (rec__walk_path(s, KARMOR_STR_PATH, __builtin_preserve_access_index(&file->f_path), true))
			return 0; /* noise */
		inode = BPF_CORE_READ(file, f_inode);
		body->flags = BPF_CORE_READ(file, f_flags);
		body->file_uid = BPF_CORE_READ(inode, i_uid.val);
		body->mode = BPF_CORE_READ(inode, i_mode);
	} else {
		start = s->off;
		rec__user_str(s, KARMOR_STR_PATH, a->path);
		if (rec__is_noise_str(s, KARMOR_STR_PATH, start))
			return 0;
		body->flags = a->flags;
		body->file_uid = (__u32)-1;
		if (a->dirfd != AT_FDCWD && s->rec.hdr.str_len[KARMOR_STR_PATH] &&
		    s->data[start & KARMOR_OFF_MASK] != '/') {
			file = task__fd_file(task, a->dirfd);
			if (file)
				rec__walk_path(s, KARMOR_STR_AUX,
					       __builtin_preserve_access_index(&file->f_path), false);
		}
	}
	rec__context(s, task, false);
	rec__submit(s, KARMOR_CAT_FILE);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int karmor_exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = task__user_regs(bpf_get_current_task_btf());
	struct open_args a = {
		.dirfd = (int)SYSCALL_ARG1(regs),
		.path = (const char *)SYSCALL_ARG2(regs),
		.flags = SYSCALL_ARG3(regs),
	};

	return file__open_exit(ctx, KARMOR_SYS_OPENAT, &a);
}

SEC("tracepoint/syscalls/sys_exit_open")
int karmor_exit_open(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = task__user_regs(bpf_get_current_task_btf());
	struct open_args a = {
		.dirfd = AT_FDCWD,
		.path = (const char *)SYSCALL_ARG1(regs),
		.flags = SYSCALL_ARG2(regs),
	};

	return file__open_exit(ctx, KARMOR_SYS_OPEN, &a);
}

SEC("tracepoint/syscalls/sys_exit_creat")
int karmor_exit_creat(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = task__user_regs(bpf_get_current_task_btf());
	struct open_args a = {
		.dirfd = AT_FDCWD,
		.path = (const char *)SYSCALL_ARG1(regs),
		.flags = O_CREAT | O_WRONLY | O_TRUNC,
	};

	return file__open_exit(ctx, KARMOR_SYS_CREAT, &a);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int karmor_exit_openat2(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = task__user_regs(bpf_get_current_task_btf());
	struct open_how *how = (struct open_how *)SYSCALL_ARG3(regs);
	struct open_args a = {
		.dirfd = (int)SYSCALL_ARG1(regs),
		.path = (const char *)SYSCALL_ARG2(regs),
	};
	__u64 flags = 0;

	bpf_probe_read_user(&flags, sizeof(flags), &how->flags);
	a.flags = flags;
	return file__open_exit(ctx, KARMOR_SYS_OPENAT2, &a);
}
