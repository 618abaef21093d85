/* SPDX-License-Identifier: GPL-2.0-only */
/* Include order for every unit (vmlinux.h first), kernel constants vmlinux.h lacks, debug print. */
#ifndef KARMOR_COMMON_H
#define KARMOR_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "karmor.h"
#include "compat.h"

/* #defines in uapi headers, so absent from vmlinux.h */
#define AT_FDCWD -100
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define O_WRONLY 01
#define O_CREAT 0100
#define O_TRUNC 01000
#define SOCK_TYPE_MASK 0xf /* socket(2) type without SOCK_NONBLOCK / SOCK_CLOEXEC */
#define EBADF 9
#define ENOTSOCK 88
#define EINPROGRESS 115
#define ECONNABORTED 103

#ifdef KARMOR_DEBUG
#define dbg(fmt, ...) bpf_printk(fmt, ##__VA_ARGS__)
#else
#define dbg(fmt, ...) do { } while (0)
#endif

/* The user registers saved at syscall entry; at sys_exit they still hold the arguments. */
static __always_inline struct pt_regs *task__user_regs(struct task_struct *task)
{
	return (struct pt_regs *)bpf_task_pt_regs(task);
}

#define SYSCALL_ARG1(regs) PT_REGS_PARM1_CORE_SYSCALL(regs)
#define SYSCALL_ARG2(regs) PT_REGS_PARM2_CORE_SYSCALL(regs)
#define SYSCALL_ARG3(regs) PT_REGS_PARM3_CORE_SYSCALL(regs)
#define SYSCALL_ARG4(regs) PT_REGS_PARM4_CORE_SYSCALL(regs)
#define SYSCALL_ARG5(regs) PT_REGS_PARM5_CORE_SYSCALL(regs)

/* The struct file behind descriptor fd of task, or NULL. */
static __always_inline struct file *task__fd_file(struct task_struct *task, long fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	struct file *file = NULL;

	if (fd < 0 || fd >= max)
		return NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

/* The struct sock of a socket descriptor (only call for an fd known to be a socket). */
static __always_inline struct sock *task__fd_sock(struct task_struct *task, long fd)
{
	struct file *file = task__fd_file(task, fd);
	struct socket *sock;

	if (!file)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	return sock ? BPF_CORE_READ(sock, sk) : NULL;
}

#endif /* KARMOR_COMMON_H */
