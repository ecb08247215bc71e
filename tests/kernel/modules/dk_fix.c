// SPDX-License-Identifier: GPL-2.0
/* The security fix for dk_target_read_slot: the bounds check done right. */
#include <linux/module.h>

#include "dynamos_kernel.h"

int dk_target_read_slot(int idx);
static struct dk_version dk_fixed;

static int dk_read_slot_fixed(int idx)
{
	DK_VERSION_ENTER(&dk_fixed);

	if (idx < 0 || idx >= 8)
		return -EINVAL;
	/* Calls from this module reach the original: reuse it for the valid range. */
	return dk_target_read_slot(idx);
}

static struct dk_version dk_fixed = {
	.func = "dk_target_read_slot",
	.name = "fixed",
	.impl = dk_read_slot_fixed,
	.owner = THIS_MODULE,
};

static int __init dk_fix_init(void)
{
	return dk_register_version(&dk_fixed);
}

static void __exit dk_fix_exit(void)
{
	dk_unregister_version(&dk_fixed);
}

module_init(dk_fix_init);
module_exit(dk_fix_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("DynAMOS test update: bounds-check fix for dk_target_read_slot");
