// SPDX-License-Identifier: GPL-2.0-only
/*
 * Network (protocol) rules at lsm/socket_create: the protocol names a new socket satisfies
 * (docs/alerts.md, "Protocols") are looked up per scope. Sockets the kernel makes for itself
 * (kern=1) are not judged. Denied: -EACCES.
 */
#include "lsm_event.h"

#define AF_PACKET 17
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOCK_RAW 3
#define SOCK_RDM 4
#define SOCK_SEQPACKET 5
#define SOCK_DCCP 6
#define SOCK_PACKET 10
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_DCCP 33
#define IPPROTO_ICMPV6 58
#define IPPROTO_SCTP 132
#define IPPROTO_MPTCP 262

static __always_inline __u32 net__protocols(int family, int type, int protocol)
{
	bool inet = family == AF_INET || family == AF_INET6;
	__u32 m = 1 << KARMOR_LSM_PROTO_ALL;
	int t = type & SOCK_TYPE_MASK;

	if (inet) {
		if (protocol == IPPROTO_TCP || (t == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_MPTCP)))
			m |= 1 << KARMOR_LSM_PROTO_TCP;
		if (protocol == IPPROTO_UDP || (t == SOCK_DGRAM && protocol == 0))
			m |= 1 << KARMOR_LSM_PROTO_UDP;
		if (protocol == IPPROTO_SCTP)
			m |= 1 << KARMOR_LSM_PROTO_SCTP;
		if (family == AF_INET && protocol == IPPROTO_ICMP)
			m |= 1 << KARMOR_LSM_PROTO_ICMP;
		if (family == AF_INET6 && protocol == IPPROTO_ICMPV6)
			m |= 1 << KARMOR_LSM_PROTO_ICMPV6;
	}
	if (t == SOCK_DCCP || (inet && protocol == IPPROTO_DCCP))
		m |= 1 << KARMOR_LSM_PROTO_DCCP;
	if (family == AF_PACKET || t == SOCK_PACKET)
		m |= 1 << KARMOR_LSM_PROTO_PACKET;
	if (t == SOCK_RAW)
		m |= 1 << KARMOR_LSM_PROTO_RAW;
	else if (t == SOCK_STREAM)
		m |= 1 << KARMOR_LSM_PROTO_STREAM;
	else if (t == SOCK_DGRAM)
		m |= 1 << KARMOR_LSM_PROTO_DGRAM;
	else if (t == SOCK_SEQPACKET)
		m |= 1 << KARMOR_LSM_PROTO_SEQPACKET;
	else if (t == SOCK_RDM)
		m |= 1 << KARMOR_LSM_PROTO_RDM;
	return m;
}

SEC("lsm/socket_create")
int BPF_PROG(karmor_lsm_socket_create, int family, int type, int protocol, int kern, int ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	const struct karmor_lsm_cfg *cfg;
	struct klsm_walk w = {};
	struct klsm_scratch *s;
	__u32 opflags = 0, mask, p;
	bool agent = false, deny;

	if (ret || kern)
		return ret;
	cfg = lsm__begin(task, KARMOR_LSM_OP_NETWORK, &w.c, &opflags, &agent);
	if (!cfg)
		return 0;
	match__scopes(&w, cfg, opflags, task);
	mask = net__protocols(family, type, protocol);
	for (p = 0; p < KARMOR_LSM_PROTO_MAX; p++) {
		if (mask & (1 << p))
			klsm_code(&w.c, p);
	}
	deny = match__decide(&w.c, opflags, KARMOR_LSM_CAT_NETWORK);
	if (!w.c.nhits && !w.c.posture)
		return 0;
	s = ev__begin(&w.c, task, KARMOR_LSM_HOOK_SOCKET_CREATE, deny ? -EACCES : 0, cfg->generation);
	if (s) {
		s->ev.family = family;
		s->ev.type = type;
		s->ev.protocol = protocol;
		ev__send(s, task);
	}
	return deny ? -EACCES : 0;
}
