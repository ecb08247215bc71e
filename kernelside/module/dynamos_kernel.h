/* SPDX-License-Identifier: GPL-2.0 */
/*
 * DynAMOS kernel engine: the interface an update module uses.
 *
 * An update module provides versions of kernel functions. Each version is a
 * function with exactly the signature of the function it replaces; it is
 * registered with dk_register_version() at module init and unregistered at
 * module exit. Registering does not redirect anything: an operator switches a
 * function to a version with `dynamos kernel switch FUNC VERSION`.
 *
 * Every version must start with DK_VERSION_ENTER(&its_descriptor). The engine
 * counts an activation when it redirects a call into the version; the macro
 * counts the activation's end. The difference is the version's use count: the
 * engine pins the owning module while the version is installed or still has
 * activations, so such a module cannot be unloaded before it has drained.
 * A version that forgets the macro never drains and its module stays pinned:
 * safe, never a use-after-free.
 */
#ifndef DYNAMOS_KERNEL_H
#define DYNAMOS_KERNEL_H

#include <linux/list.h>
#include <linux/module.h>
#include <linux/percpu.h>

struct dk_func;

struct dk_version_count {
	unsigned long enter; /* redirected calls into the version */
	unsigned long exit;  /* activations that have left it */
};

struct dk_version {
	/* Filled in by the update module. */
	const char *func;     /* name of the kernel function to replace */
	const char *name;     /* version name, unique per function ("fixed", "v2") */
	void *impl;           /* the replacement, same signature as func */
	struct module *owner; /* THIS_MODULE */

	/* Engine-private from here on; zero-initialise. */
	struct list_head node;       /* in its function's list of versions */
	struct list_head drain_node; /* in the list of versions left to drain */
	struct dk_func *pf;
	struct dk_version_count __percpu *count;
	bool installed;               /* in its function's slot */
	bool held;                    /* the engine holds a reference on owner */
	bool draining;                /* held, out of its slot, activations may remain */
	unsigned long gen, drain_gen; /* gen: bumped whenever the version leaves its slot */
};

int dk_register_version(struct dk_version *v);
void dk_unregister_version(struct dk_version *v);

static inline void dk_version_exit_(struct dk_version **v)
{
	this_cpu_inc((*v)->count->exit);
}

/* First statement of every version: counts the activation's end at scope exit. */
#define DK_VERSION_ENTER(v)                                                                        \
	struct dk_version *dk_active_version_ __attribute__((cleanup(dk_version_exit_), unused)) = \
		(v)

#endif /* DYNAMOS_KERNEL_H */
