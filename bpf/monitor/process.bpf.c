// SPDX-License-Identifier: GPL-2.0-only
/*
 * Process visibility from the scheduler tracepoints, which fire only on their own event
 * (no syscall slow path): exec (after success), fork (new processes, not threads), exit
 * (of the whole process).
 */
#include "record.h"

SEC("tracepoint/sched/sched_process_exec")
int karmor_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct karmor_exec *body;
	unsigned long arg_start, arg_end, len;
	struct scratch *s;
	struct file *exe;
	__u32 o;

	s = rec__begin(task, KARMOR_EV_EXEC, KARMOR_SYS_NONE, sizeof(*body));
	if (!s)
		return 0;
	body = &s->rec.exec;
	exe = BPF_CORE_READ(task, mm, exe_file);
	body->file_uid = BPF_CORE_READ(exe, f_inode, i_uid.val);
	body->old_pid = ctx->old_pid;

	/* the name as passed to execve (may be relative or a symlink); EXE is the resolved file */
	rec__kernel_str(s, KARMOR_STR_PATH, (void *)ctx + (ctx->__data_loc_filename & 0xffff),
			KARMOR_STR_LIMIT);

	/* argv, NUL-separated, as the new image sees it on its stack */
	arg_start = BPF_CORE_READ(task, mm, arg_start);
	arg_end = BPF_CORE_READ(task, mm, arg_end);
	len = arg_end - arg_start;
	if (len > KARMOR_ARGV_MAX) {
		len = KARMOR_ARGV_MAX;
		rec__truncated(s);
	}
	o = s->off;
	if (len && o <= KARMOR_REC_LIMIT &&
	    !bpf_probe_read_user(&s->data[o & KARMOR_OFF_MASK], len, (void *)arg_start)) {
		s->off = o + len;
		s->rec.hdr.str_len[KARMOR_STR_AUX] = len;
	}

	rec__context(s, task, true);
	rec__submit(s, KARMOR_CAT_PROCESS);
	return 0;
}

/* Is the task just created by current (pid `child`) a thread of current's process? */
static __always_inline bool fork__is_thread(struct task_struct *task, pid_t child)
{
	struct list_head *tail = BPF_CORE_READ(task, signal, thread_head.prev);
	struct task_struct *last = (void *)tail - bpf_core_field_offset(struct task_struct, thread_node);

	/* copy_process() appends a new thread to its group's list before this tracepoint */
	return BPF_CORE_READ(last, pid) == child;
}

SEC("tracepoint/sched/sched_process_fork")
int karmor_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	pid_t child = ctx->child_pid;
	struct karmor_fork *body;
	struct scratch *s;

	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return 0;
	if (fork__is_thread(task, child))
		return 0;
	s = rec__begin(task, KARMOR_EV_FORK, KARMOR_SYS_NONE, sizeof(*body));
	if (!s)
		return 0;
	body = &s->rec.fork;
	body->child_pid = child;
	body->child_tgid = child;
	rec__context(s, task, false);
	rec__submit(s, KARMOR_CAT_PROCESS);
	return 0;
}

static __always_inline bool exit__group_dead(void *ctx, struct task_struct *task)
{
	struct trace_event_raw_sched_process_exit___karmor *tp = ctx;

	if (bpf_core_field_exists(tp->group_dead))
		return tp->group_dead;
	return BPF_CORE_READ(task, signal, live.counter) == 0;
}

SEC("tracepoint/sched/sched_process_exit")
int karmor_exit(void *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct karmor_exit *body;
	struct scratch *s;
	__u32 tgid;

	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return 0;
	if (!exit__group_dead(ctx, task))
		return 0;
	s = rec__begin(task, KARMOR_EV_EXIT, KARMOR_SYS_NONE, sizeof(*body));
	if (!s)
		return 0;
	body = &s->rec.exit;
	body->code = BPF_CORE_READ(task, exit_code);
	tgid = s->rec.hdr.tgid;
	bpf_map_delete_elem(&proc_ctx, &tgid);
	rec__submit(s, KARMOR_CAT_PROCESS);
	return 0;
}
