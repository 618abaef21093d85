// SPDX-License-Identifier: GPL-2.0-only
/*
 * Audited syscalls at sys_exit, arguments from the saved user registers. Paths are as
 * the caller passed them (the file may be gone after unlink); a path relative to a dirfd
 * comes with the dirfd's walked path in AUX, one relative to the cwd is joined with the
 * process's cwd in user space. body.arg[] per syscall is listed in bpf/README.md.
 */
#include "record.h"

struct sys_args {
	long dirfd;
	const char *path;
	const char *aux; /* mount: fstype */
	const char *aux2; /* mount: source */
	__u64 arg[3];
};

static __always_inline int sys__exit(struct trace_event_raw_sys_exit *ctx, __u16 syscall, struct sys_args *a)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct karmor_sys *body;
	struct scratch *s;
	struct file *dir;
	__u32 start;

	s = rec__begin(task, KARMOR_EV_SYSCALL, syscall, sizeof(*body));
	if (!s)
		return 0;
	s->rec.hdr.retval = ctx->ret;
	body = &s->rec.sys;
	body->dirfd = a->dirfd;
	body->arg[0] = a->arg[0];
	body->arg[1] = a->arg[1];
	body->arg[2] = a->arg[2];
	if (a->path) {
		start = s->off;
		rec__user_str(s, KARMOR_STR_PATH, a->path);
		if (a->dirfd != AT_FDCWD && s->rec.hdr.str_len[KARMOR_STR_PATH] &&
		    s->data[start & KARMOR_OFF_MASK] != '/') {
			dir = task__fd_file(task, a->dirfd);
			if (dir)
				rec__walk_path(s, KARMOR_STR_AUX,
					       __builtin_preserve_access_index(&dir->f_path), false);
		}
	}
	rec__user_str(s, KARMOR_STR_AUX, a->aux);
	rec__user_str(s, KARMOR_STR_AUX2, a->aux2);
	rec__context(s, task, false);
	rec__submit(s, KARMOR_CAT_SYSCALL);
	return 0;
}

#define REGS() task__user_regs(bpf_get_current_task_btf())

SEC("tracepoint/syscalls/sys_exit_unlink")
int karmor_exit_unlink(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = REGS();
	struct sys_args a = { .dirfd = AT_FDCWD, .path = (void *)SYSCALL_ARG1(regs) };

	return sys__exit(ctx, KARMOR_SYS_UNLINK, &a);
}

SEC("tracepoint/syscalls/sys_exit_unlinkat")
int karmor_exit_unlinkat(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = REGS();
	struct sys_args a = {
		.dirfd = (int)SYSCALL_ARG1(regs),
		.path = (void *)SYSCALL_ARG2(regs),
		.arg = { SYSCALL_ARG3(regs) }, /* flags (AT_REMOVEDIR) */
	};

	return sys__exit(ctx, KARMOR_SYS_UNLINKAT, &a);
}

SEC("tracepoint/syscalls/sys_exit_rmdir")
int karmor_exit_rmdir(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = REGS();
	struct sys_args a = { .dirfd = AT_FDCWD, .path = (void *)SYSCALL_ARG1(regs) };

	return sys__exit(ctx, KARMOR_SYS_RMDIR, &a);
}

SEC("tracepoint/syscalls/sys_exit_chown")
int karmor_exit_chown(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = REGS();
	struct sys_args a = {
		.dirfd = AT_FDCWD,
		.path = (void *)SYSCALL_ARG1(regs),
		.arg = { (__u32)SYSCALL_ARG2(regs), (__u32)SYSCALL_ARG3(regs) }, /* uid, gid */
	};

	return sys__exit(ctx, KARMOR_SYS_CHOWN, &a);
}

SEC("tracepoint/syscalls/sys_exit_fchownat")
int karmor_exit_fchownat(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = REGS();
	struct sys_args a = {
		.dirfd = (int)SYSCALL_ARG1(regs),
		.path = (void *)SYSCALL_ARG2(regs),
		/* uid, gid, flags */
		.arg = { (__u32)SYSCALL_ARG3(regs), (__u32)SYSCALL_ARG4(regs), SYSCALL_ARG5(regs) },
	};

	return sys__exit(ctx, KARMOR_SYS_FCHOWNAT, &a);
}

SEC("tracepoint/syscalls/sys_exit_setuid")
int karmor_exit_setuid(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = REGS();
	struct sys_args a = { .dirfd = AT_FDCWD, .arg = { (__u32)SYSCALL_ARG1(regs) } };

	return sys__exit(ctx, KARMOR_SYS_SETUID, &a);
}

SEC("tracepoint/syscalls/sys_exit_setgid")
int karmor_exit_setgid(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = REGS();
	struct sys_args a = { .dirfd = AT_FDCWD, .arg = { (__u32)SYSCALL_ARG1(regs) } };

	return sys__exit(ctx, KARMOR_SYS_SETGID, &a);
}

SEC("tracepoint/syscalls/sys_exit_ptrace")
int karmor_exit_ptrace(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = REGS();
	struct sys_args a = {
		.dirfd = AT_FDCWD,
		.arg = { SYSCALL_ARG1(regs), (__u32)SYSCALL_ARG2(regs) }, /* request, pid */
	};

	return sys__exit(ctx, KARMOR_SYS_PTRACE, &a);
}

SEC("tracepoint/syscalls/sys_exit_mount")
int karmor_exit_mount(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = REGS();
	struct sys_args a = {
		.dirfd = AT_FDCWD,
		.aux2 = (void *)SYSCALL_ARG1(regs), /* source */
		.path = (void *)SYSCALL_ARG2(regs), /* target */
		.aux = (void *)SYSCALL_ARG3(regs), /* fstype */
		.arg = { SYSCALL_ARG4(regs) }, /* flags */
	};

	return sys__exit(ctx, KARMOR_SYS_MOUNT, &a);
}

SEC("tracepoint/syscalls/sys_exit_umount")
int karmor_exit_umount2(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = REGS();
	struct sys_args a = {
		.dirfd = AT_FDCWD,
		.path = (void *)SYSCALL_ARG1(regs),
		.arg = { SYSCALL_ARG2(regs) }, /* flags */
	};

	return sys__exit(ctx, KARMOR_SYS_UMOUNT2, &a);
}
