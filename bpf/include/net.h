/* SPDX-License-Identifier: GPL-2.0-only */
/* Helpers shared by the network units (net.bpf.c, sock.bpf.c, tcp.bpf.c). */
#ifndef KARMOR_NET_H
#define KARMOR_NET_H

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

/* The result of a TCP connect that left SYN_SENT. */
static __always_inline long conn__result(struct sock *sk, int newstate)
{
	int err;

	if (newstate == TCP_ESTABLISHED)
		return 0;
	err = BPF_CORE_READ(sk, sk_err);
	return -(err ? err : ECONNABORTED); /* no error: the caller closed it first */
}

/* A TCP connect whose outcome inet_sock_set_state will report (see tcp.bpf.c). */
static __always_inline bool conn__track(struct sock *sk, const struct karmor_hdr *h)
{
	__u64 key = (__u64)sk;

	return !bpf_map_update_elem(&pending_connect, &key, h, BPF_ANY);
}

#endif /* KARMOR_NET_H */
