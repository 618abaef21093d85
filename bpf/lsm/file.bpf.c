// SPDX-License-Identifier: GPL-2.0-only
/*
 * File rules: opens (lsm/file_open, reads and writes), and the other ways to change a file
 * that readOnly and Block must cover: truncate(2) and O_TRUNC (lsm/path_truncate), unlink and
 * rmdir... of the file itself (lsm/path_unlink), and rename of it or over it
 * (lsm/path_rename). The open of a program for exec is left to the process rules, as the
 * monitor never sees it as a file open either.
 */
#include "lsm_judge.h"

#define FMODE_WRITE 0x2
#define FMODE_EXEC 0x20
#define __FMODE_EXEC 040 /* the same bit among the open flags */
#define O_APPEND 02000

SEC("lsm/file_open")
int BPF_PROG(karmor_lsm_file_open, struct file *file, int ret)
{
	__u32 fmode, flags;

	if (ret)
		return ret;
	fmode = BPF_CORE_READ(file, f_mode);
	flags = BPF_CORE_READ(file, f_flags);
	/* open_exec() marks its opens with __FMODE_EXEC in f_flags (f_mode has FMODE_EXEC
	 * only on newer kernels) */
	if ((fmode & FMODE_EXEC) || (flags & __FMODE_EXEC))
		return 0;
	return lsm__path(KARMOR_LSM_HOOK_FILE_OPEN, KARMOR_LSM_OP_FILE, BPF_CORE_READ(file, f_path.dentry),
			 BPF_CORE_READ(file, f_path.mnt), (fmode & FMODE_WRITE) || (flags & O_APPEND), flags,
			 file);
}

SEC("lsm/path_truncate")
int BPF_PROG(karmor_lsm_path_truncate, const struct path *path, int ret)
{
	if (ret)
		return ret;
	return lsm__path(KARMOR_LSM_HOOK_PATH_TRUNCATE, KARMOR_LSM_OP_FILE, BPF_CORE_READ(path, dentry),
			 BPF_CORE_READ(path, mnt), true, O_WRONLY | O_TRUNC, NULL);
}

SEC("lsm/path_unlink")
int BPF_PROG(karmor_lsm_path_unlink, const struct path *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return lsm__path(KARMOR_LSM_HOOK_PATH_UNLINK, KARMOR_LSM_OP_FILE, lsm__untyped(dentry), BPF_CORE_READ(dir, mnt), true,
			 0, NULL);
}

SEC("lsm/path_rename")
int BPF_PROG(karmor_lsm_path_rename, const struct path *old_dir, struct dentry *old_dentry,
	     const struct path *new_dir, struct dentry *new_dentry, unsigned int flags, int ret)
{
	int err;

	if (ret)
		return ret;
	/* the file that moves away, and the name it takes (possibly replacing a file) */
	err = lsm__path(KARMOR_LSM_HOOK_PATH_RENAME, KARMOR_LSM_OP_FILE, lsm__untyped(old_dentry), BPF_CORE_READ(old_dir, mnt),
			true, 0, NULL);
	if (err)
		return err;
	return lsm__path(KARMOR_LSM_HOOK_PATH_RENAME, KARMOR_LSM_OP_FILE, lsm__untyped(new_dentry), BPF_CORE_READ(new_dir, mnt),
			 true, 0, NULL);
}
