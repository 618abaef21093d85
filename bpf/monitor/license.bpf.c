// SPDX-License-Identifier: GPL-2.0-only
/* One LICENSE per object: the helpers the monitor uses (probe reads, ring buffer) are GPL-only. */
#include "maps.h"

char LICENSE[] SEC("license") = "GPL";
