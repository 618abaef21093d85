// SPDX-License-Identifier: GPL-2.0-only
/* One LICENSE per object: probe reads of the task and its executable are GPL-only helpers. */
#include "netattr.h"

char LICENSE[] SEC("license") = "GPL";
