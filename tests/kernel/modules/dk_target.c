// SPDX-License-Identifier: GPL-2.0
/*
 * The companion test module: functions to be updated while kernel threads call
 * them, and counters (module parameters, read-only) that tell the tests what
 * the callers saw.
 *   dk_target_read_slot  deliberately faulty: an off-by-one bounds check lets
 *                        index 8 read the secret stored after the public table
 *   dk_target_compute    returns x * 4 + tag; tag 0 here, versions use 1 and 2
 *   dk_target_wait       called every millisecond by its own thread
 */
#include <linux/delay.h>
#include <linux/kthread.h>
#include <linux/module.h>

#define DK_PUBLIC 8
#define DK_SECRET 0x5ec7e7

static const int dk_table[DK_PUBLIC + 1] = { 10, 11, 12, 13, 14, 15, 16, 17, DK_SECRET };

static unsigned long slot_calls, leaks, compute_calls, invalid, tag0, tag1, tag2, wait_calls;
module_param(slot_calls, ulong, 0444);
module_param(leaks, ulong, 0444);
module_param(compute_calls, ulong, 0444);
module_param(invalid, ulong, 0444);
module_param(tag0, ulong, 0444);
module_param(tag1, ulong, 0444);
module_param(tag2, ulong, 0444);
module_param(wait_calls, ulong, 0444);

noinline __attribute__((noipa)) int dk_target_read_slot(int idx)
{
	if (idx < 0 || idx > DK_PUBLIC) /* the bug: must be >= */
		return -EINVAL;
	return dk_table[idx];
}
EXPORT_SYMBOL_GPL(dk_target_read_slot);

noinline __attribute__((noipa)) long dk_target_compute(long x)
{
	return x * 4;
}

noinline __attribute__((noipa)) void dk_target_wait(void)
{
	barrier();
}

static struct task_struct *dk_callers[2], *dk_waiter;

static int dk_caller_fn(void *unused)
{
	long x = 0, r;

	while (!kthread_should_stop()) {
		if (dk_target_read_slot(x % (DK_PUBLIC + 1)) == DK_SECRET)
			leaks++;
		slot_calls++;
		r = dk_target_compute(x);
		compute_calls++;
		if (r >> 2 != x || (r & 3) == 3) {
			invalid++;
		} else {
			switch (r & 3) {
			case 0:
				tag0++;
				break;
			case 1:
				tag1++;
				break;
			case 2:
				tag2++;
				break;
			}
		}
		x = (x + 1) & 0xffffff;
		/*
		 * A plain cond_resched() is no voluntary context switch: a loop
		 * like this would block RCU Tasks, and with it ftrace's and the
		 * engine's waits, for as long as it runs.
		 */
		cond_resched_tasks_rcu_qs();
	}
	return 0;
}

static int dk_waiter_fn(void *unused)
{
	while (!kthread_should_stop()) {
		dk_target_wait();
		wait_calls++;
		usleep_range(500, 1000);
	}
	return 0;
}

static int __init dk_target_init(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(dk_callers); i++) {
		dk_callers[i] = kthread_run(dk_caller_fn, NULL, "dk_caller/%d", i);
		if (IS_ERR(dk_callers[i]))
			goto fail;
	}
	dk_waiter = kthread_run(dk_waiter_fn, NULL, "dk_waiter");
	if (!IS_ERR(dk_waiter))
		return 0;
fail:
	while (--i >= 0)
		kthread_stop(dk_callers[i]);
	return -ENOMEM;
}

static void __exit dk_target_exit(void)
{
	int i;

	kthread_stop(dk_waiter);
	for (i = 0; i < ARRAY_SIZE(dk_callers); i++)
		kthread_stop(dk_callers[i]);
}

module_init(dk_target_init);
module_exit(dk_target_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("DynAMOS test target: functions updated live while threads call them");
