// SPDX-License-Identifier: GPL-2.0-only
/*
 * Process rules at exec: lsm/bprm_check_security runs for the program and again for its
 * interpreter (#! scripts), before the new image replaces the old one. The acting executable
 * (fromSource) is therefore the program that calls execve: after fork(), the parent's
 * executable. Denied: -EACCES, so execve(2) fails with "Permission denied".
 */
#include "lsm_judge.h"

SEC("lsm/bprm_check_security")
int BPF_PROG(karmor_lsm_bprm_check, struct linux_binprm *bprm, int ret)
{
	struct file *file;

	if (ret)
		return ret;
	file = BPF_CORE_READ(bprm, file);
	if (!file)
		return 0;
	return lsm__path(KARMOR_LSM_HOOK_BPRM_CHECK, KARMOR_LSM_OP_PROCESS, BPF_CORE_READ(file, f_path.dentry),
			 BPF_CORE_READ(file, f_path.mnt), false, 0, NULL);
}
