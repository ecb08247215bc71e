/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the test update modules share: a version of this module replacing a
 * function, and the life of a module that holds one version, registered on load
 * and unregistered on unload.
 */
#ifndef DK_TEST_MODULE_H
#define DK_TEST_MODULE_H

#include <linux/module.h>

#include "dynamos_kernel.h"

/* A version named `vname` of `fn` (the function's name), implemented by `impl_fn`. */
#define DK_TEST_VERSION(fn, vname, impl_fn)                                       \
	{                                                                         \
		.func = fn, .name = vname, .impl = impl_fn, .owner = THIS_MODULE, \
	}

/* The module's init and exit: register `version` on load, unregister on unload. */
#define DK_TEST_ONE_VERSION_MODULE(version)             \
	static int __init dk_test_init(void)            \
	{                                               \
		return dk_register_version(&(version)); \
	}                                               \
	static void __exit dk_test_exit(void)           \
	{                                               \
		dk_unregister_version(&(version));      \
	}                                               \
	module_init(dk_test_init);                      \
	module_exit(dk_test_exit)

#endif
