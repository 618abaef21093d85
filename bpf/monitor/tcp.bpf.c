// SPDX-License-Identifier: GPL-2.0-only
/*
 * TCP outcomes from sock/inet_sock_set_state, which fires only on TCP state changes (not
 * on every syscall), often in softirq context: the identity comes from a header saved
 * earlier, in process context.
 *  - karmor_tcp_connect_done: a connect leaving SYN_SENT (both network modes).
 *  - karmor_tcp_accept ("cgroup" mode): remembers who called listen() on a port, and
 *    reports each connection whose handshake completes on it as that process's ACCEPT.
 */
#include "net.h"

SEC("tracepoint/sock/inet_sock_set_state")
int karmor_tcp_connect_done(struct trace_event_raw_inet_sock_set_state *ctx)
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
	s = rec__resume(h, KARMOR_EV_CONNECT, sizeof(*c));
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

struct listen_key {
	__u16 family;
	__u16 port;
};

/* who put a port into LISTEN: the process its connections are accepted for */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct listen_key);
	__type(value, struct karmor_hdr);
	__uint(max_entries, 4096);
} listeners SEC(".maps");

SEC("tracepoint/sock/inet_sock_set_state")
int karmor_tcp_accept(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct listen_key key = { .family = ctx->family, .port = ctx->sport };
	struct task_struct *task;
	struct karmor_hdr h, *owner;
	struct karmor_conn *c;
	struct scratch *s;
	__u64 id;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (ctx->newstate == TCP_LISTEN) { /* listen(2), in the caller's context */
		id = bpf_get_current_pid_tgid();
		if (rec__is_self(id))
			return 0;
		task = (void *)bpf_get_current_task();
		hdr__fill(&h, task, id, KARMOR_EV_ACCEPT, KARMOR_SYS_NONE);
		bpf_map_update_elem(&listeners, &key, &h, BPF_ANY);
		return 0;
	}
	if (ctx->oldstate == TCP_LISTEN && ctx->newstate == TCP_CLOSE) { /* not LISTEN -> SYN_RECV: a child */
		bpf_map_delete_elem(&listeners, &key);
		return 0;
	}
	if (ctx->oldstate != TCP_SYN_RECV || ctx->newstate != TCP_ESTABLISHED)
		return 0;
	owner = bpf_map_lookup_elem(&listeners, &key);
	if (!owner)
		return 0;
	s = rec__resume(owner, KARMOR_EV_ACCEPT, sizeof(*c));
	if (!s)
		return 0;
	c = &s->rec.conn;
	c->family = ctx->family;
	c->type = BPF_CORE_READ_BITFIELD_PROBED((struct sock *)ctx->skaddr, sk_type);
	c->protocol = ctx->protocol;
	c->sport = ctx->sport;
	c->dport = ctx->dport;
	c->fd = -1;
	if (ctx->family == AF_INET) {
		bpf_probe_read_kernel(c->saddr, 4, ctx->saddr);
		bpf_probe_read_kernel(c->daddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(c->saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(c->daddr, 16, ctx->daddr_v6);
	}
	rec__submit(s, KARMOR_CAT_NETWORK);
	return 0;
}
