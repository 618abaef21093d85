// SPDX-License-Identifier: GPL-2.0-only
/*
 * cgroup/connect4, connect6, sendmsg4, sendmsg6 on the cgroup v2 root: run in the calling
 * process for every connect() and every sendto()/sendmsg() with an address, before the
 * packet exists. Each records (netns, destination, protocol, source port if bound) ->
 * the process, its executable path (walked here, so a process that exits at once is still
 * named) and the socket cookie.
 */
#include "netattr.h"

/* The state of one executable-path walk, shared with the bpf_loop callback. */
struct exe_walk {
	struct netattr_owner *v;
	struct dentry *d;
	struct vfsmount *vm;
	struct mount *mnt;
	__u64 mnt_off;
	__u32 off;
	__u32 done;
};

/*
 * One step up from w->d: cross a mount point, or append the component. A bpf_loop callback
 * is verified once, not once per iteration and program: the walk costs the verifier
 * milliseconds instead of seconds.
 */
static long netattr__exe_step(__u64 index, struct exe_walk *w)
{
	/* Locals, not w->...: a CO-RE read of w->vm would relocate struct exe_walk itself. */
	struct vfsmount *vm = w->vm;
	struct mount *mnt = w->mnt;
	struct dentry *d = w->d;
	struct dentry *root = BPF_CORE_READ(vm, mnt_root);
	struct dentry *up;
	struct mount *parent;
	const unsigned char *name;
	__u32 off = w->off;
	long n;

	if (d == root) {
		parent = BPF_CORE_READ(mnt, mnt_parent);
		if (parent == mnt) {
			w->done = 1; /* the root of the mount namespace */
			return 1;
		}
		w->d = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = parent;
		w->vm = (void *)parent + w->mnt_off;
		return 0;
	}
	up = BPF_CORE_READ(d, d_parent);
	if (up == d) {
		w->done = 1;
		return 1;
	}
	if (off > NETATTR_EXE_LEN - NETATTR_COMP_MAX)
		return 1; /* out of room: not done, so marked truncated */
	name = BPF_CORE_READ(d, d_name.name);
	n = bpf_probe_read_kernel_str(&w->v->exe[off], NETATTR_COMP_MAX, name);
	if (n <= 0) {
		w->done = 1;
		return 1;
	}
	if (n == NETATTR_COMP_MAX)
		w->v->flags |= NETATTR_F_EXE_TRUNC;
	w->off = off + n;
	w->d = up;
	return 0;
}

/* Writes the executable's path components, leaf first, NUL-terminated, into v->exe. */
static __always_inline void netattr__exe(struct netattr_owner *v, struct task_struct *task)
{
	struct file *file = BPF_CORE_READ(task, mm, exe_file);
	struct exe_walk w = { .v = v };

	v->exe_len = 0;
	if (!file)
		return;
	w.mnt_off = bpf_core_field_offset(struct mount, mnt);
	w.d = BPF_CORE_READ(file, f_path.dentry);
	w.vm = BPF_CORE_READ(file, f_path.mnt);
	w.mnt = (void *)w.vm - w.mnt_off;
	bpf_loop(NETATTR_DEPTH, netattr__exe_step, &w, 0);
	if (!w.done)
		v->flags |= NETATTR_F_EXE_TRUNC;
	v->exe_len = w.off;
}

static __always_inline int netattr__record(struct bpf_sock_addr *ctx, bool v6)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct netattr_key key = {};
	struct netattr_owner *v;
	struct bpf_sock *sk;
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ug = bpf_get_current_uid_gid();
	__u32 zero = 0;

	key.netns = bpf_get_netns_cookie(ctx);
	key.proto = ctx->protocol;
	key.dport = bpf_ntohs(ctx->user_port);
	sk = ctx->sk;
	if (sk)
		key.sport = sk->src_port;
	if (!v6) {
		__u32 ip4 = ctx->user_ip4;

		key.family = AF_INET;
		__builtin_memcpy(key.daddr, &ip4, 4);
	} else {
		__u32 ip6[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };

		if (ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0xffff)) {
			/* v4-mapped: the packets will be IPv4, and so is the logged flow */
			key.family = AF_INET;
			__builtin_memcpy(key.daddr, &ip6[3], 4);
		} else {
			key.family = AF_INET6;
			__builtin_memcpy(key.daddr, ip6, 16);
		}
	}
	v = bpf_map_lookup_elem(&netattr_scratch, &zero);
	if (!v)
		return 1;
	v->ts_ns = bpf_ktime_get_boot_ns();
	v->cookie = bpf_get_socket_cookie(ctx);
	v->tgid = id >> 32;
	v->pid = (__u32)id;
	v->ppid = BPF_CORE_READ(task, real_parent, tgid);
	v->uid = (__u32)ug;
	v->gid = ug >> 32;
	v->flags = 0;
	bpf_get_current_comm(v->comm, sizeof(v->comm));
	netattr__exe(v, task);
	if (v->flags & NETATTR_F_EXE_TRUNC)
		netattr__count(NETATTR_C_EXE_TRUNC);
	if (bpf_map_update_elem(&netattr_flows, &key, v, BPF_ANY))
		netattr__count(NETATTR_C_UPDATE_FAILED);
	else
		netattr__count(NETATTR_C_RECORDED);
	return 1;
}

SEC("cgroup/connect4")
int karmor_na_connect4(struct bpf_sock_addr *ctx)
{
	return netattr__record(ctx, false);
}

SEC("cgroup/connect6")
int karmor_na_connect6(struct bpf_sock_addr *ctx)
{
	return netattr__record(ctx, true);
}

SEC("cgroup/sendmsg4")
int karmor_na_sendmsg4(struct bpf_sock_addr *ctx)
{
	return netattr__record(ctx, false);
}

SEC("cgroup/sendmsg6")
int karmor_na_sendmsg6(struct bpf_sock_addr *ctx)
{
	return netattr__record(ctx, true);
}
