// SPDX-License-Identifier: GPL-2.0
/*
 * Two versions of dk_target_compute (tags 1 and 2) for adaptive switching, and
 * a version of dk_target_wait that holds its caller while `hold` is set: the
 * module must not unload while that activation is inside it.
 */
#include <linux/delay.h>
#include <linux/module.h>

#include "dk_test_module.h"

static int hold;
module_param(hold, int, 0644);
static unsigned long held_calls;
module_param(held_calls, ulong, 0444);

static struct dk_version dk_va, dk_vb, dk_hold;

static long dk_compute_a(long x)
{
	DK_VERSION_ENTER(&dk_va);
	return x * 4 + 1;
}

static long dk_compute_b(long x)
{
	DK_VERSION_ENTER(&dk_vb);
	return x * 4 + 2;
}

static void dk_wait_hold(void)
{
	DK_VERSION_ENTER(&dk_hold);
	held_calls++;
	while (READ_ONCE(hold))
		msleep(5);
}

static struct dk_version dk_va = DK_TEST_VERSION("dk_target_compute", "vA", dk_compute_a);
static struct dk_version dk_vb = DK_TEST_VERSION("dk_target_compute", "vB", dk_compute_b);
static struct dk_version dk_hold = DK_TEST_VERSION("dk_target_wait", "hold", dk_wait_hold);

static int __init dk_ab_init(void)
{
	int err = dk_register_version(&dk_va);

	if (err)
		return err;
	err = dk_register_version(&dk_vb);
	if (err)
		goto fail_va;
	err = dk_register_version(&dk_hold);
	if (err)
		goto fail_vb;
	return 0;
fail_vb:
	dk_unregister_version(&dk_vb);
fail_va:
	dk_unregister_version(&dk_va);
	return err;
}

static void __exit dk_ab_exit(void)
{
	dk_unregister_version(&dk_hold);
	dk_unregister_version(&dk_vb);
	dk_unregister_version(&dk_va);
}

module_init(dk_ab_init);
module_exit(dk_ab_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION(
	"DynAMOS test update: two versions of dk_target_compute, a holding dk_target_wait");
