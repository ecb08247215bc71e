// SPDX-License-Identifier: GPL-2.0
/*
 * An identical copy of the getppid system call handler, to measure what a
 * redirect costs on a syscall path: the same work, reached through the slot.
 */
#include <linux/module.h>
#include <linux/pid.h>
#include <linux/ptrace.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>

#include "dk_test_module.h"

static struct dk_version dk_copy;

static long dk_getppid_copy(const struct pt_regs *regs)
{
	long pid;

	DK_VERSION_ENTER(&dk_copy);
	rcu_read_lock();
	pid = task_tgid_vnr(rcu_dereference(current->real_parent));
	rcu_read_unlock();
	return pid;
}

static struct dk_version dk_copy = DK_TEST_VERSION("__x64_sys_getppid", "copy", dk_getppid_copy);

DK_TEST_ONE_VERSION_MODULE(dk_copy);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("DynAMOS test update: an identical getppid handler, for overhead figures");
