// SPDX-License-Identifier: GPL-2.0-only
/*
 * Network visibility, "cgroup" mode (the default): cgroup socket hooks attached to the
 * root of the cgroup v2 hierarchy run in the caller's context on socket operations only,
 * so no syscall takes the slow path. What they see: inet sockets created (sock_create),
 * connects as asked (connect4/6; a TCP connect is reported with its outcome by tcp.bpf.c),
 * binds that succeeded with the address and port the kernel chose (post_bind4/6). What
 * they do not: other families (unix, packet, netlink), calls that fail before the hook.
 * Every program returns 1: they watch, they never refuse.
 */
#include "net.h"

#define SOCK_STREAM_TYPE 1

SEC("cgroup/sock_create")
int karmor_sock_create(struct bpf_sock *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct karmor_socket *body;
	struct scratch *s;

	s = rec__begin_cg(task, KARMOR_EV_SOCKET, KARMOR_SYS_SOCKET, sizeof(*body));
	if (!s)
		return 1;
	body = &s->rec.socket;
	body->family = ctx->family;
	body->type = ctx->type;
	body->protocol = ctx->protocol;
	body->fd = -1; /* not installed yet */
	rec__context(s, task, false);
	rec__submit(s, KARMOR_CAT_NETWORK);
	return 1;
}

/* `v6` is a constant per program: a connect4 program may not even read user_ip6 */
static __always_inline int sock__connect(struct bpf_sock_addr *ctx, bool v6)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct karmor_conn *c;
	struct scratch *s;

	s = rec__begin_cg(task, KARMOR_EV_CONNECT, KARMOR_SYS_CONNECT, sizeof(*c));
	if (!s)
		return 1;
	c = &s->rec.conn;
	c->family = ctx->user_family;
	c->type = ctx->type;
	c->protocol = ctx->protocol;
	c->dport = bpf_ntohs(ctx->user_port);
	c->fd = -1;
	if (!v6) {
		__u32 ip4 = ctx->user_ip4;

		__builtin_memcpy(c->daddr, &ip4, 4);
	} else {
		__u32 ip6[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };

		__builtin_memcpy(c->daddr, ip6, 16);
	}
	if (ctx->type == SOCK_STREAM_TYPE && ctx->protocol == IPPROTO_TCP) {
		conn__track((struct sock *)ctx->sk, &s->rec.hdr); /* reported with its outcome */
		return 1;
	}
	rec__context(s, task, false);
	rec__submit(s, KARMOR_CAT_NETWORK);
	return 1;
}

SEC("cgroup/connect4")
int karmor_connect4(struct bpf_sock_addr *ctx)
{
	return sock__connect(ctx, false);
}

SEC("cgroup/connect6")
int karmor_connect6(struct bpf_sock_addr *ctx)
{
	return sock__connect(ctx, true);
}

static __always_inline int sock__post_bind(struct bpf_sock *ctx, bool v6)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct karmor_conn *c;
	struct scratch *s;

	s = rec__begin_cg(task, KARMOR_EV_BIND, KARMOR_SYS_BIND, sizeof(*c));
	if (!s)
		return 1;
	c = &s->rec.conn;
	c->family = ctx->family;
	c->type = ctx->type;
	c->protocol = ctx->protocol;
	c->sport = ctx->src_port;
	c->fd = -1;
	if (!v6) {
		__u32 ip4 = ctx->src_ip4;

		__builtin_memcpy(c->saddr, &ip4, 4);
	} else {
		__u32 ip6[4] = { ctx->src_ip6[0], ctx->src_ip6[1], ctx->src_ip6[2], ctx->src_ip6[3] };

		__builtin_memcpy(c->saddr, ip6, 16);
	}
	rec__context(s, task, false);
	rec__submit(s, KARMOR_CAT_NETWORK);
	return 1;
}

SEC("cgroup/post_bind4")
int karmor_post_bind4(struct bpf_sock *ctx)
{
	return sock__post_bind(ctx, false);
}

SEC("cgroup/post_bind6")
int karmor_post_bind6(struct bpf_sock *ctx)
{
	return sock__post_bind(ctx, true);
}
