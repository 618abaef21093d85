// SPDX-License-Identifier: GPL-2.0-only
/*
 * Network visibility, "syscalls" mode: sys_exit of socket, connect, accept, accept4, bind.
 * Sees every family and every failure, at the price every syscall tracepoint has (all
 * syscalls of all processes take the slow path). Addresses come from the struct sock when
 * the call succeeded (the kernel's view: autobound ports, the accepted peer) and from the
 * caller's sockaddr when it failed. A non-blocking TCP connect (-EINPROGRESS) is followed
 * by a second CONNECT record, flagged ASYNC, with the real result (tcp.bpf.c).
 */
#include "net.h"

/* The sockaddr the caller passed: the local end for bind, the remote one otherwise. */
static __always_inline void conn__from_user(struct scratch *s, struct karmor_conn *c,
					    const void *uaddr, long addrlen, bool local)
{
	__u16 family = 0;

	if (!uaddr || bpf_probe_read_user(&family, sizeof(family), uaddr))
		return;
	c->family = family;
	if (family == AF_INET) {
		struct sockaddr_in sin = {};

		bpf_probe_read_user(&sin, sizeof(sin), uaddr);
		if (local) {
			c->sport = bpf_ntohs(sin.sin_port);
			__builtin_memcpy(c->saddr, &sin.sin_addr, 4);
		} else {
			c->dport = bpf_ntohs(sin.sin_port);
			__builtin_memcpy(c->daddr, &sin.sin_addr, 4);
		}
	} else if (family == AF_INET6) {
		struct sockaddr_in6 sin6 = {};

		bpf_probe_read_user(&sin6, sizeof(sin6), uaddr);
		if (local) {
			c->sport = bpf_ntohs(sin6.sin6_port);
			__builtin_memcpy(c->saddr, &sin6.sin6_addr, 16);
		} else {
			c->dport = bpf_ntohs(sin6.sin6_port);
			__builtin_memcpy(c->daddr, &sin6.sin6_addr, 16);
		}
	} else if (family == AF_UNIX && addrlen > 2) {
		/* raw sun_path bytes: an abstract name starts with NUL (user space shows "@") */
		__u32 len = addrlen - 2;

		if (len > sizeof(((struct sockaddr_un *)0)->sun_path))
			len = sizeof(((struct sockaddr_un *)0)->sun_path);
		rec__user_bytes(s, KARMOR_STR_PATH, uaddr + 2, len);
	}
}

SEC("tracepoint/syscalls/sys_exit_socket")
int karmor_exit_socket(struct trace_event_raw_sys_exit *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct pt_regs *regs = task__user_regs(bpf_get_current_task_btf());
	long ret = ctx->ret;
	struct karmor_socket *body;
	struct scratch *s;
	struct sock *sk;

	s = rec__begin(task, KARMOR_EV_SOCKET, KARMOR_SYS_SOCKET, sizeof(*body));
	if (!s)
		return 0;
	s->rec.hdr.retval = ret;
	body = &s->rec.socket;
	body->fd = ret >= 0 ? ret : -1;
	sk = ret >= 0 ? task__fd_sock(task, ret) : NULL;
	if (sk) {
		body->family = BPF_CORE_READ(sk, __sk_common.skc_family);
		body->type = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_type);
		body->protocol = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
	} else {
		body->family = SYSCALL_ARG1(regs);
		body->type = SYSCALL_ARG2(regs) & SOCK_TYPE_MASK;
		body->protocol = SYSCALL_ARG3(regs);
	}
	rec__context(s, task, false);
	rec__submit(s, KARMOR_CAT_NETWORK);
	return 0;
}

/* connect and bind: (fd, sockaddr, addrlen) */
static __always_inline int net__addr_exit(struct trace_event_raw_sys_exit *ctx, __u16 kind, __u16 syscall)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct pt_regs *regs = task__user_regs(bpf_get_current_task_btf());
	long ret = ctx->ret;
	long fd = (int)SYSCALL_ARG1(regs);
	const void *uaddr = (const void *)SYSCALL_ARG2(regs);
	long addrlen = (int)SYSCALL_ARG3(regs);
	bool ok = ret == 0 || (kind == KARMOR_EV_CONNECT && ret == -EINPROGRESS);
	bool tracked = false;
	struct karmor_conn *c;
	struct scratch *s;
	struct sock *sk;
	__u64 key = 0;
	int state;

	s = rec__begin(task, kind, syscall, sizeof(*c));
	if (!s)
		return 0;
	s->rec.hdr.retval = ret;
	c = &s->rec.conn;
	c->fd = fd;
	sk = ret != -EBADF && ret != -ENOTSOCK ? task__fd_sock(task, fd) : NULL;
	if (sk)
		conn__from_sock(c, sk);
	if (!ok || !sk || (c->family != AF_INET && c->family != AF_INET6))
		conn__from_user(s, c, uaddr, addrlen, kind == KARMOR_EV_BIND);
	rec__context(s, task, false);
	if (sk && ret == -EINPROGRESS && c->protocol == IPPROTO_TCP)
		tracked = conn__track(sk, &s->rec.hdr);
	rec__submit(s, KARMOR_CAT_NETWORK);

	/*
	 * The handshake may be over already (on loopback it completes inside connect()); then
	 * no state change is coming. Whoever removes the pending entry reports the completion.
	 */
	if (!tracked)
		return 0;
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	key = (__u64)sk;
	if (state == TCP_SYN_SENT || bpf_map_delete_elem(&pending_connect, &key))
		return 0;
	s = rec__resume(&s->rec.hdr, KARMOR_EV_CONNECT, sizeof(*c));
	if (!s)
		return 0;
	conn__from_sock(&s->rec.conn, sk);
	s->rec.conn.fd = fd;
	s->rec.hdr.retval = conn__result(sk, state);
	rec__submit(s, KARMOR_CAT_NETWORK);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int karmor_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	return net__addr_exit(ctx, KARMOR_EV_CONNECT, KARMOR_SYS_CONNECT);
}

SEC("tracepoint/syscalls/sys_exit_bind")
int karmor_exit_bind(struct trace_event_raw_sys_exit *ctx)
{
	return net__addr_exit(ctx, KARMOR_EV_BIND, KARMOR_SYS_BIND);
}

static __always_inline int net__accept_exit(struct trace_event_raw_sys_exit *ctx, __u16 syscall)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct pt_regs *regs = task__user_regs(bpf_get_current_task_btf());
	long ret = ctx->ret;
	struct karmor_conn *c;
	struct scratch *s;
	struct sock *sk;

	s = rec__begin(task, KARMOR_EV_ACCEPT, syscall, sizeof(*c));
	if (!s)
		return 0;
	s->rec.hdr.retval = ret;
	c = &s->rec.conn;
	/* the accepted socket on success, else the listening one (for its family and port) */
	c->fd = ret >= 0 ? ret : (int)SYSCALL_ARG1(regs);
	sk = ret != -EBADF && ret != -ENOTSOCK ? task__fd_sock(task, c->fd) : NULL;
	if (sk)
		conn__from_sock(c, sk);
	rec__context(s, task, false);
	rec__submit(s, KARMOR_CAT_NETWORK);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int karmor_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return net__accept_exit(ctx, KARMOR_SYS_ACCEPT);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int karmor_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return net__accept_exit(ctx, KARMOR_SYS_ACCEPT4);
}
