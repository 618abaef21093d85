// SPDX-License-Identifier: GPL-2.0-only
/*
 * sockops on the cgroup v2 root, TCP_CONNECT_CB only: by then TCP has chosen the source
 * port, so the entry connect4/6 made (source port 0) is copied under the exact 4-tuple,
 * provided it belongs to this very socket (same cookie). Two processes connecting to one
 * destination at once are then told apart.
 */
#include "netattr.h"

SEC("sockops")
int karmor_na_sockops(struct bpf_sock_ops *skops)
{
	struct netattr_key key = {};
	struct netattr_owner *v;

	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	key.netns = bpf_get_netns_cookie(skops);
	key.proto = IPPROTO_TCP;
	key.dport = bpf_ntohl(skops->remote_port);
	key.family = skops->family;
	if (skops->family == AF_INET) {
		__u32 ip4 = skops->remote_ip4;

		__builtin_memcpy(key.daddr, &ip4, 4);
	} else {
		__u32 ip6[4] = { skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2],
				 skops->remote_ip6[3] };

		if (ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0xffff)) {
			key.family = AF_INET;
			__builtin_memcpy(key.daddr, &ip6[3], 4);
		} else {
			__builtin_memcpy(key.daddr, ip6, 16);
		}
	}
	v = bpf_map_lookup_elem(&netattr_flows, &key);
	if (!v || v->cookie != bpf_get_socket_cookie(skops))
		return 1;
	key.sport = skops->local_port;
	if (!bpf_map_update_elem(&netattr_flows, &key, v, BPF_ANY))
		netattr__count(NETATTR_C_EXACT);
	return 1;
}
