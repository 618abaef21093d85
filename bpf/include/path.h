/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Paths for records. bpf_d_path is not callable from tracepoints, so a path is walked
 * from its dentry up through d_parent, crossing mount points through struct mount, and
 * written as NUL-terminated components, leaf first (user space reverses and joins).
 * The walk stops at the root of the mount namespace, like d_path does for a process.
 */
#ifndef KARMOR_PATH_H
#define KARMOR_PATH_H

#include "maps.h"

static __always_inline void rec__truncated(struct scratch *s)
{
	s->rec.hdr.flags |= KARMOR_F_TRUNC;
}

/* Does a noise directory live on this device? Only then are inode numbers worth reading. */
static __always_inline bool path__noisy_dev(__u64 dev)
{
	int i;

	for (i = 0; i < KARMOR_NOISE_MAX; i++) {
		if (i >= karmor_cfg.noise_dirs)
			break;
		if (karmor_cfg.noise_dir[i].dev == dev)
			return true;
	}
	return false;
}

/* Is (dev, dentry) one of the configured noise directories? */
static __always_inline bool path__is_noise_dir(__u64 dev, struct dentry *d)
{
	__u64 ino = BPF_CORE_READ(d, d_inode, i_ino);
	int i;

	for (i = 0; i < KARMOR_NOISE_MAX; i++) {
		if (i >= karmor_cfg.noise_dirs)
			break;
		if (karmor_cfg.noise_dir[i].dev == dev && karmor_cfg.noise_dir[i].ino == ino)
			return true;
	}
	return false;
}

/*
 * Appends the path of (d, vm) as string `slot`. With `noise`, returns true (and leaves
 * the record unusable) as soon as an ancestor is a noise directory.
 */
static __always_inline bool rec__walk(struct scratch *s, int slot, struct dentry *d,
				      struct vfsmount *vm, bool noise)
{
	__u64 mnt_off = bpf_core_field_offset(struct mount, mnt);
	struct mount *mnt = (void *)vm - mnt_off;
	struct dentry *mnt_root = BPF_CORE_READ(vm, mnt_root);
	__u64 dev = noise ? BPF_CORE_READ(vm, mnt_sb, s_dev) : 0;
	bool noisy = noise && path__noisy_dev(dev); /* per mount: most have no noise directory */
	__u32 start = s->off;
	struct dentry *up;
	const unsigned char *name;
	long n;
	__u32 o;
	int i;

	for (i = 0; i < KARMOR_PATH_DEPTH; i++) {
		if (noisy && path__is_noise_dir(dev, d))
			return true;
		if (d == mnt_root) {
			struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);

			if (parent == mnt)
				break; /* the root of the namespace */
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = parent;
			vm = (void *)mnt + mnt_off;
			mnt_root = BPF_CORE_READ(vm, mnt_root);
			if (noise) {
				dev = BPF_CORE_READ(vm, mnt_sb, s_dev);
				noisy = path__noisy_dev(dev);
			}
			continue;
		}
		up = BPF_CORE_READ(d, d_parent);
		if (up == d)
			break; /* root of a tree that is not mounted here */
		o = s->off;
		if (o > KARMOR_REC_LIMIT || o - start > KARMOR_STR_LIMIT - KARMOR_NAME_MAX) {
			rec__truncated(s);
			break;
		}
		name = BPF_CORE_READ(d, d_name.name);
		n = bpf_probe_read_kernel_str(&s->data[o & KARMOR_OFF_MASK], KARMOR_NAME_MAX, name);
		if (n > 0)
			s->off = o + n;
		d = up;
	}
	if (i == KARMOR_PATH_DEPTH)
		rec__truncated(s);
	s->rec.hdr.str_len[slot] = s->off - start;
	s->rec.hdr.str_walked |= 1 << slot;
	return false;
}

static __always_inline bool rec__walk_path(struct scratch *s, int slot, const struct path *p,
					   bool noise)
{
	return rec__walk(s, slot, BPF_CORE_READ(p, dentry), BPF_CORE_READ(p, mnt), noise);
}

/* A user-memory string as string `slot` (without its NUL). */
static __always_inline void rec__user_str(struct scratch *s, int slot, const char *ustr)
{
	__u32 o = s->off;
	long n;

	if (!ustr)
		return;
	if (o > KARMOR_REC_LIMIT) {
		rec__truncated(s);
		return;
	}
	n = bpf_probe_read_user_str(&s->data[o & KARMOR_OFF_MASK], KARMOR_STR_LIMIT, ustr);
	if (n <= 1)
		return;
	if (n == KARMOR_STR_LIMIT)
		rec__truncated(s);
	s->off = o + n - 1;
	s->rec.hdr.str_len[slot] = n - 1;
}

/* `len` bytes of user memory (len <= KARMOR_STR_LIMIT) as string `slot`. */
static __always_inline void rec__user_bytes(struct scratch *s, int slot, const void *uptr, __u32 len)
{
	__u32 o = s->off;

	if (o > KARMOR_REC_LIMIT || len == 0 || len > KARMOR_STR_LIMIT)
		return;
	if (bpf_probe_read_user(&s->data[o & KARMOR_OFF_MASK], len, uptr))
		return;
	s->off = o + len;
	s->rec.hdr.str_len[slot] = len;
}

/* A kernel string of at most `max` bytes (max <= KARMOR_STR_LIMIT) as string `slot`. */
static __always_inline void rec__kernel_str(struct scratch *s, int slot, const void *kstr, __u32 max)
{
	__u32 o = s->off;
	long n;

	if (o > KARMOR_REC_LIMIT)
		return;
	n = bpf_probe_read_kernel_str(&s->data[o & KARMOR_OFF_MASK], max & (KARMOR_STR_LIMIT - 1), kstr);
	if (n <= 1)
		return;
	s->off = o + n - 1;
	s->rec.hdr.str_len[slot] = n - 1;
}

/* Does string `slot` (plain) start with a noise prefix, as a whole path component? */
static __always_inline bool rec__is_noise_str(struct scratch *s, int slot, __u32 start)
{
	__u32 len = s->rec.hdr.str_len[slot];
	int i, j;

	for (i = 0; i < KARMOR_NOISE_MAX; i++) {
		__u32 plen;
		bool same = true;
		char next = 0;

		if (i >= karmor_cfg.noise_strs)
			break;
		plen = karmor_cfg.noise_str_len[i];
		if (plen > len || plen == 0 || plen >= KARMOR_NOISE_STR)
			continue;
		for (j = 0; j < KARMOR_NOISE_STR; j++) {
			if (j >= plen)
				break;
			if (s->data[(start + j) & KARMOR_OFF_MASK] != karmor_cfg.noise_str[i][j]) {
				same = false;
				break;
			}
		}
		if (plen < len)
			next = s->data[(start + plen) & KARMOR_OFF_MASK];
		if (same && (next == 0 || next == '/'))
			return true;
	}
	return false;
}

#endif /* KARMOR_PATH_H */
