// SPDX-License-Identifier: GPL-2.0
/*
 * DynAMOS kernel engine: redirects kernel functions to versions provided by
 * update modules, switches and reverts them at runtime, counts each version's
 * users, and probes functions. See docs/kernel.md for the design.
 */
#include <linux/module.h>

#include "engine.h"

DEFINE_MUTEX(dk_lock);

static int dk_module_notify(struct notifier_block *nb, unsigned long action, void *data)
{
	if (action == MODULE_STATE_GOING) {
		mutex_lock(&dk_lock);
		dk_func_going(data);
		mutex_unlock(&dk_lock);
	}
	return NOTIFY_OK;
}

static struct notifier_block dk_module_nb = {
	.notifier_call = dk_module_notify,
};

static int __init dk_init(void)
{
	int err;

	err = dk_versions_init();
	if (err)
		return err;
	err = register_module_notifier(&dk_module_nb);
	if (err)
		goto fail_versions;
	err = dk_control_init();
	if (err)
		goto fail_notifier;
	pr_info("dynamos: kernel engine loaded, control at /dev/dynamos\n");
	return 0;

fail_notifier:
	unregister_module_notifier(&dk_module_nb);
fail_versions:
	dk_versions_exit();
	return err;
}

static void __exit dk_exit(void)
{
	dk_control_exit();
	unregister_module_notifier(&dk_module_nb);
	mutex_lock(&dk_lock);
	/* Every update module depends on us, so all are gone: only probes and patch points remain. */
	dk_probes_cleanup();
	dk_updates_cleanup();
	dk_funcs_cleanup();
	mutex_unlock(&dk_lock);
	dk_versions_exit();
	pr_info("dynamos: kernel engine unloaded\n");
}

module_init(dk_init);
module_exit(dk_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("DynAMOS kernel engine: versioned redirects of kernel functions");
