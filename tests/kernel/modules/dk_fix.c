// SPDX-License-Identifier: GPL-2.0
/* The security fix for dk_target_read_slot: the bounds check done right. */
#include <linux/module.h>

#include "dk_test_module.h"

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

static struct dk_version dk_fixed =
	DK_TEST_VERSION("dk_target_read_slot", "fixed", dk_read_slot_fixed);

DK_TEST_ONE_VERSION_MODULE(dk_fixed);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("DynAMOS test update: bounds-check fix for dk_target_read_slot");
