// SPDX-License-Identifier: GPL-2.0-only
/*
 * Network visibility at sys_exit of socket, connect, accept, accept4 and bind: addresses
 * come from the struct sock when the call succeeded (the kernel's view: autobound ports,
 * the accepted peer) and from the caller's sockaddr when it failed. A non-blocking TCP
 * connect (-EINPROGRESS) is followed by a second CONNECT record, flagged ASYNC, when
 * sock/inet_sock_set_state sees it leave SYN_SENT: that one carries the real result.
 */
#include "record.h"

static __always_inline void conn__from_sock(struct karmor_conn *c, struct sock *sk)
{
	c->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	c->type = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_type);
	c->protocol = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
	if (c->family != AF_INET && c->family != AF_INET6)
		return;
	c->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	c->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (c->family == AF_INET) {
		bpf_core_read(c->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(c->daddr, 4, &sk->__sk_common.skc_daddr);
	} else if (bpf_core_field_exists(sk->__sk_common.skc_v6_daddr)) {
		bpf_core_read(c->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(c->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

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

/* The result of a TCP connect that left SYN_SENT. */
static __always_inline long conn__result(struct sock *sk, int newstate)
{
	int err;

	if (newstate == TCP_ESTABLISHED)
		return 0;
	err = BPF_CORE_READ(sk, sk_err);
	return -(err ? err : ECONNABORTED); /* no error: the caller closed it first */
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
	if (sk && ret == -EINPROGRESS && c->protocol == IPPROTO_TCP) {
		key = (__u64)sk;
		tracked = !bpf_map_update_elem(&pending_connect, &key, &s->rec.hdr, BPF_ANY);
	}
	rec__submit(s, KARMOR_CAT_NETWORK);

	/*
	 * The handshake may be over already (on loopback it completes inside connect()); then
	 * no state change is coming. Whoever removes the pending entry reports the completion.
	 */
	if (!tracked)
		return 0;
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (state == TCP_SYN_SENT || bpf_map_delete_elem(&pending_connect, &key))
		return 0;
	s = rec__resume(&s->rec.hdr, sizeof(*c));
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

SEC("tracepoint/sock/inet_sock_set_state")
int karmor_tcp_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct karmor_hdr *h;
	struct karmor_conn *c;
	struct scratch *s;
	__u64 key;

	if (ctx->oldstate != TCP_SYN_SENT || ctx->protocol != IPPROTO_TCP)
		return 0;
	key = (__u64)ctx->skaddr;
	h = bpf_map_lookup_elem(&pending_connect, &key);
	if (!h)
		return 0;
	s = rec__resume(h, sizeof(*c));
	bpf_map_delete_elem(&pending_connect, &key);
	if (!s)
		return 0;
	c = &s->rec.conn;
	c->family = ctx->family;
	c->type = BPF_CORE_READ_BITFIELD_PROBED((struct sock *)ctx->skaddr, sk_type);
	c->protocol = ctx->protocol;
	c->sport = ctx->sport;
	c->dport = ctx->dport;
	c->fd = -1;
	/* copied with probe reads: clang would otherwise index ctx with a variable offset */
	if (ctx->family == AF_INET) {
		bpf_probe_read_kernel(c->saddr, 4, ctx->saddr);
		bpf_probe_read_kernel(c->daddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(c->saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(c->daddr, 16, ctx->daddr_v6);
	}
	s->rec.hdr.retval = conn__result((struct sock *)ctx->skaddr, ctx->newstate);
	rec__submit(s, KARMOR_CAT_NETWORK);
	return 0;
}
