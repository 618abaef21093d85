/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * How the BPF-LSM hooks decide (the semantics of docs/alerts.md, "Matching", in the kernel):
 *
 *   1. lsm__begin: the agent itself and kernel threads are never judged; the live bank and
 *      its configuration are read once, so one decision sees one rule set.
 *   2. scopes: "everyone" (scope 0) when the op has rules without fromSource, plus the
 *      fromSource scopes of the acting executable: lsm_srcs by its directory and name,
 *      lsm_srcdirs by each directory above it.
 *   3. rules: per scope, the exact-file key (holding directory + name) and every directory
 *      above the file (lsm_dirs; non-recursive rules only for the holding directory), or the
 *      protocol/capability codes (lsm_codes).
 *   4. decide: any Block rule denies; an Allow rule whose readOnly/ownerOnly hold makes the
 *      access allowed; otherwise, if the op's category is a whitelist that confines this
 *      process, the default posture decides.
 */
#ifndef KARMOR_LSM_MATCH_H
#define KARMOR_LSM_MATCH_H

#include "lsm_maps.h"

#define PF_KTHREAD 0x00200000
#define EACCES 13
#define EPERM 1

/* The decision under way; on the hook's stack (never in per-CPU memory: a decision must not
 * be disturbed by another task on the same CPU). */
struct klsm_ctx {
	__u32 bank;
	__u32 op;
	__u32 nscopes;
	__u32 scope[KARMOR_LSM_SCOPES];
	__u32 confine; /* KARMOR_LSM_CAT_* the process's scopes confine */
	__u8 write; /* the access writes */
	__u8 owner; /* the actor owns the file */
	__u8 allowed; /* an Allow rule covers the access */
	__u8 blocked; /* a Block rule matched */
	__u8 posture; /* enum karmor_lsm_action of a default-posture decision */
	__u8 protect; /* the target is one of the agent's own files (read or exec) */
	__u8 _pad[2];
	__u32 nhits;
	__u32 id[KARMOR_LSM_HITS];
	__u8 action[KARMOR_LSM_HITS];
};

/* A walk up the directories above a file; the callback of bpf_loop. */
#define WALK_RULES 0
#define WALK_SOURCES 1

struct klsm_walk {
	struct klsm_ctx c;
	__u64 d; /* struct dentry *: the directory looked at now */
	__u64 mnt; /* struct mount * it is in */
	__u64 mnt_root; /* that mount's root dentry */
	__u32 depth;
	__u32 mode; /* WALK_RULES | WALK_SOURCES */
};

static __always_inline struct mount *lsm__real_mount(struct vfsmount *vm)
{
	return (void *)vm - bpf_core_field_offset(struct mount, mnt);
}

/* Moves w->d to the directory holding it, crossing mount points like d_path does.
 * Returns false at the root of the mount namespace (or of a detached tree). */
static __always_inline bool walk__up(struct klsm_walk *w)
{
	struct dentry *d = (void *)w->d;
	struct dentry *up;
	int i;

	for (i = 0; i < 4; i++) {
		struct mount *m = (void *)w->mnt;
		struct mount *p;

		if ((__u64)d != w->mnt_root)
			break;
		p = BPF_CORE_READ(m, mnt_parent);
		if (p == m)
			return false;
		/* the mount point stands for the mounted root just looked at: go above it */
		d = BPF_CORE_READ(m, mnt_mountpoint);
		w->mnt = (__u64)p;
		w->mnt_root = (__u64)BPF_CORE_READ(p, mnt.mnt_root);
	}
	up = BPF_CORE_READ(d, d_parent);
	if (!up || up == d)
		return false;
	w->d = (__u64)up;
	return true;
}

static __always_inline void walk__start(struct klsm_walk *w, struct dentry *d, struct vfsmount *vm)
{
	w->d = (__u64)d;
	w->mnt = (__u64)lsm__real_mount(vm);
	w->mnt_root = (__u64)BPF_CORE_READ(vm, mnt_root);
	w->depth = 0;
}

/*
 * Subprograms the verifier checks once each, on their own (they are global: bpf/lsm/match.bpf.c),
 * instead of once per call site; this keeps every hook far below the verifier's limits.
 */

/* Applies the rules of one key. `direct`: the key is the file itself or its holding directory
 * (else a directory further up, where only recursive directory rules apply). */
int klsm_refs(struct klsm_ctx *c, const struct karmor_lsm_refs *v, int direct);
/* The rules on `code` (protocol or capability) in each scope of c. */
int klsm_code(struct klsm_ctx *c, __u32 code);
/* Appends the path of (dentry, vfsmount) to the per-CPU event as string `slot`. */
int klsm_event_path(int slot, __u64 dentry, __u64 vfsmount);

static __always_inline void match__add_scope(struct klsm_ctx *c, const struct karmor_lsm_scope *s)
{
	__u32 n = c->nscopes;

	if (!s->scope)
		return;
	c->confine |= s->confine;
	if (n < KARMOR_LSM_SCOPES)
		c->scope[n & (KARMOR_LSM_SCOPES - 1)] = s->scope;
	c->nscopes = n + 1;
}

/* One directory of a walk: rule directories or source directories. */
static long walk__step(__u32 index, void *arg)
{
	struct klsm_walk *w = arg;
	struct dentry *d = (void *)w->d;
	struct inode *inode = BPF_CORE_READ(d, d_inode);
	struct karmor_lsm_dir_key k = {};
	__u32 j;

	if (!inode)
		return 1;
	k.bank = w->c.bank;
	k.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	k.ino = BPF_CORE_READ(inode, i_ino);
	if (w->mode == WALK_SOURCES) {
		struct karmor_lsm_srcdir *sd = bpf_map_lookup_elem(&lsm_srcdirs, &k);

		if (sd) {
			if (w->depth == 0)
				match__add_scope(&w->c, &sd->direct);
			match__add_scope(&w->c, &sd->recursive);
		}
	} else {
		k.op = w->c.op;
		for (j = 0; j < KARMOR_LSM_SCOPES; j++) {
			struct karmor_lsm_refs *v;

			if (j >= w->c.nscopes)
				break;
			k.scope = w->c.scope[j];
			v = bpf_map_lookup_elem(&lsm_dirs, &k);
			if (v)
				klsm_refs(&w->c, v, w->depth == 0);
		}
	}
	w->depth++;
	return walk__up(w) ? 0 : 1;
}

/* The key of a file: its holding directory (w->d after walk__up) and its name. */
static __always_inline void match__file_key(struct karmor_lsm_file_key *k, struct klsm_walk *w,
					    struct dentry *d)
{
	struct dentry *holder = (void *)w->d;
	struct inode *dir = BPF_CORE_READ(holder, d_inode);

	k->bank = w->c.bank;
	k->dev = BPF_CORE_READ(dir, i_sb, s_dev);
	k->ino = BPF_CORE_READ(dir, i_ino);
	k->name_len = BPF_CORE_READ(d, d_name.len);
	bpf_probe_read_kernel_str(k->name, sizeof(k->name), BPF_CORE_READ(d, d_name.name));
}

/* Step 2: the scopes the acting process is in. */
static __always_inline void match__scopes(struct klsm_walk *w, const struct karmor_lsm_cfg *cfg,
					  __u32 opflags, struct task_struct *task)
{
	struct klsm_task_scopes *cache;
	struct file *exe;
	struct dentry *d;
	struct karmor_lsm_scope *s;
	struct karmor_lsm_file_key k = {};
	__u32 base, i;

	if (opflags & KARMOR_LSM_F_GLOBAL) {
		w->c.scope[0] = 0;
		w->c.nscopes = 1;
	}
	if (!(opflags & (KARMOR_LSM_F_SCOPED | KARMOR_LSM_F_CONFINE_SCOPED)))
		return;
	if (!(cfg->flags & (KARMOR_LSM_C_SOURCES | KARMOR_LSM_C_SOURCE_DIRS)))
		return;
	exe = BPF_CORE_READ(task, mm, exe_file);
	if (!exe)
		return; /* an unknown executable is in no fromSource scope */
	base = w->c.nscopes;
	cache = bpf_task_storage_get(&lsm_task_scopes, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (cache && cache->exe == (__u64)exe && cache->generation == cfg->generation) {
		for (i = 0; i < KARMOR_LSM_SCOPES; i++) {
			struct karmor_lsm_scope one = { .scope = cache->scope[i] };

			if (i >= cache->nscopes)
				break;
			match__add_scope(&w->c, &one);
		}
		w->c.confine |= cache->confine;
		goto done;
	}
	d = BPF_CORE_READ(exe, f_path.dentry);
	walk__start(w, d, BPF_CORE_READ(exe, f_path.mnt));
	if (walk__up(w)) {
		if (cfg->flags & KARMOR_LSM_C_SOURCES) {
			match__file_key(&k, w, d);
			s = bpf_map_lookup_elem(&lsm_srcs, &k);
			if (s)
				match__add_scope(&w->c, s);
		}
		if (cfg->flags & KARMOR_LSM_C_SOURCE_DIRS) {
			w->mode = WALK_SOURCES;
			bpf_loop(KARMOR_LSM_DEPTH, walk__step, w, 0);
		}
	}
	if (cache) {
		cache->exe = (__u64)exe;
		cache->generation = cfg->generation;
		cache->confine = w->c.confine;
		cache->nscopes = 0;
		for (i = 0; i < KARMOR_LSM_SCOPES; i++) {
			__u32 j = base + i;

			if (j >= w->c.nscopes || j >= KARMOR_LSM_SCOPES)
				break;
			cache->scope[i] = w->c.scope[j];
			cache->nscopes = i + 1;
		}
	}
done:
	if (w->c.nscopes > KARMOR_LSM_SCOPES)
		w->c.nscopes = KARMOR_LSM_SCOPES;
}

/* Step 3 for files and programs: the exact key, the name alone (execname), then the
 * directories above. */
static __always_inline void match__path(struct klsm_walk *w, __u32 opflags, struct dentry *d,
					struct vfsmount *vm)
{
	struct karmor_lsm_file_key k = {};
	__u32 j;

	walk__start(w, d, vm);
	if (!walk__up(w))
		return; /* the root directory itself: nothing holds it */
	if (opflags & KARMOR_LSM_F_FILES) {
		match__file_key(&k, w, d);
		k.op = w->c.op;
		for (j = 0; j < KARMOR_LSM_SCOPES; j++) {
			struct karmor_lsm_refs *v;

			if (j >= w->c.nscopes)
				break;
			k.scope = w->c.scope[j];
			v = bpf_map_lookup_elem(&lsm_files, &k);
			if (v)
				klsm_refs(&w->c, v, 1);
		}
	}
	if (opflags & KARMOR_LSM_F_NAMES) {
		if (!(opflags & KARMOR_LSM_F_FILES))
			match__file_key(&k, w, d);
		k.op = w->c.op;
		k.dev = 0;
		k.ino = 0;
		for (j = 0; j < KARMOR_LSM_SCOPES; j++) {
			struct karmor_lsm_refs *v;

			if (j >= w->c.nscopes)
				break;
			k.scope = w->c.scope[j];
			v = bpf_map_lookup_elem(&lsm_files, &k);
			if (v)
				klsm_refs(&w->c, v, 1);
		}
	}
	if (opflags & KARMOR_LSM_F_DIRS) {
		w->mode = WALK_RULES;
		w->depth = 0;
		bpf_loop(KARMOR_LSM_DEPTH, walk__step, w, 0);
	}
}

/* Step 4. True: deny. */
static __always_inline bool match__decide(struct klsm_ctx *c, __u32 opflags, __u32 category)
{
	bool confined = (opflags & KARMOR_LSM_F_CONFINE_ALL) ||
			((opflags & KARMOR_LSM_F_CONFINE_SCOPED) && (c->confine & category));

	if (!c->blocked && confined && !c->allowed)
		c->posture = (opflags & KARMOR_LSM_F_POSTURE_BLOCK) ? KARMOR_LSM_BLOCK : KARMOR_LSM_AUDIT;
	/* the agent must always be able to start and read its policies: audit instead */
	return (c->blocked || c->posture == KARMOR_LSM_BLOCK) && !c->protect;
}

static __always_inline __u32 lsm__category(__u32 op)
{
	if (op == KARMOR_LSM_OP_NETWORK)
		return KARMOR_LSM_CAT_NETWORK;
	if (op == KARMOR_LSM_OP_CAPABILITIES)
		return KARMOR_LSM_CAT_CAPABILITIES;
	return KARMOR_LSM_CAT_FILE;
}

/*
 * Step 1. Returns the live configuration and fills c->bank/op and *opflags, or NULL when this
 * access is not judged at all: the agent (*agent set; the exempt tgid with its start time, so
 * a recycled pid is not exempt), kernel threads, or no rule and no whitelist for the op.
 */
static __always_inline const struct karmor_lsm_cfg *lsm__begin(struct task_struct *task, __u32 op,
							       struct klsm_ctx *c, __u32 *opflags,
							       bool *agent)
{
	struct karmor_lsm_state *st;
	struct karmor_lsm_cfg *cfg;
	__u32 zero = 0, bank, tgid;

	st = bpf_map_lookup_elem(&lsm_state, &zero);
	if (!st)
		return NULL;
	tgid = bpf_get_current_pid_tgid() >> 32;
	if (tgid == st->agent_tgid && st->agent_tgid &&
	    BPF_CORE_READ(task, group_leader, start_boottime) / 10000000ULL == st->agent_start) {
		*agent = true;
		return NULL;
	}
	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return NULL;
	bank = st->bank & 1;
	cfg = bpf_map_lookup_elem(&lsm_cfg, &bank);
	if (!cfg)
		return NULL;
	*opflags = cfg->op_flags[op & (KARMOR_LSM_OP_MAX - 1)];
	if (!(*opflags & (KARMOR_LSM_F_GLOBAL | KARMOR_LSM_F_SCOPED | KARMOR_LSM_F_CONFINE_ALL |
			  KARMOR_LSM_F_CONFINE_SCOPED)))
		return NULL;
	c->bank = bank;
	c->op = op;
	return cfg;
}

#endif /* KARMOR_LSM_MATCH_H */
