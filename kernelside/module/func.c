// SPDX-License-Identifier: GPL-2.0
/*
 * Patch points: the redirect mechanism and nothing else. A function is hijacked
 * once with an ftrace ops that may modify the instruction pointer (IPMODIFY,
 * the mechanism livepatch uses underneath); from then on every call passes
 * through dk_ftrace_handler, which jumps to the version in the function's slot,
 * or lets the original run when the slot is empty. Which version sits in a slot
 * is decided by update.c, never here.
 */
#include <linux/kprobes.h>
#include <linux/slab.h>

#include "engine.h"

LIST_HEAD(dk_funcs);

/*
 * Runs on every call of a hijacked function, in any context, with preemption
 * disabled by the recursion lock. Counting the activation here, before the
 * jump, is what makes draining exact: version.c waits one RCU grace period
 * after a version leaves its slot, after which no handler can still be
 * between reading the slot and counting (the partner is dk_drain_work()).
 */
static void notrace dk_ftrace_handler(unsigned long ip, unsigned long parent_ip,
				      struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
	struct dk_func *pf = container_of(ops, struct dk_func, ops);
	struct dk_version *v;
	int bit;

	bit = ftrace_test_recursion_trylock(ip, parent_ip);
	if (bit < 0)
		return;
	v = READ_ONCE(pf->slot);
	/* A version may call the function it replaces: calls from its own module run the original. */
	if (v && !within_module(parent_ip, v->owner)) {
		this_cpu_inc(v->count->enter);
		ftrace_instruction_pointer_set(fregs, (unsigned long)v->impl);
	}
	ftrace_test_recursion_unlock(bit);
}

struct dk_func *dk_func_find(const char *name)
{
	struct dk_func *pf;

	list_for_each_entry(pf, &dk_funcs, node)
		if (!strcmp(pf->name, name))
			return pf;
	return NULL;
}

/*
 * kallsyms_lookup_name() is not exported since 5.7; a kprobe resolves a name
 * (vmlinux or any loaded module) and refuses functions that must not be touched.
 */
static unsigned long dk_resolve(const char *name, int *err)
{
	struct kprobe kp = { .symbol_name = name };
	unsigned long addr;

	*err = register_kprobe(&kp);
	if (*err < 0)
		return 0;
	addr = (unsigned long)kp.addr;
	unregister_kprobe(&kp);
	return addr;
}

struct dk_func *dk_func_get(const char *name, int *err)
{
	struct dk_func *pf = dk_func_find(name);
	unsigned long addr;

	*err = 0;
	if (pf)
		return pf;
	if (strlen(name) >= KSYM_NAME_LEN) {
		*err = -ENAMETOOLONG;
		return NULL;
	}
	addr = dk_resolve(name, err);
	if (!addr)
		return NULL;
	pf = kzalloc(sizeof(*pf), GFP_KERNEL);
	if (!pf) {
		*err = -ENOMEM;
		return NULL;
	}
	strscpy(pf->name, name, sizeof(pf->name));
	pf->addr = addr;
	INIT_LIST_HEAD(&pf->versions);
	pf->ops.func = dk_ftrace_handler;
	/*
	 * RECURSION: the handler takes the recursion lock itself (cheaper than
	 * ftrace's assist). Where ftrace_regs carry the instruction pointer
	 * (WITH_ARGS) the full register save is not needed: livepatch's choice
	 * since 5.11, and measurably a little cheaper (docs/kernel.md).
	 */
	pf->ops.flags = FTRACE_OPS_FL_IPMODIFY | FTRACE_OPS_FL_RECURSION;
	if (!IS_ENABLED(CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS))
		pf->ops.flags |= FTRACE_OPS_FL_SAVE_REGS;
	/* ftrace maps a function's start address to its fentry site; -EINVAL: not traceable. */
	*err = ftrace_set_filter_ip(&pf->ops, addr, 0, 0);
	if (*err) {
		ftrace_free_filter(&pf->ops);
		kfree(pf);
		return NULL;
	}
	list_add_tail(&pf->node, &dk_funcs);
	return pf;
}

int dk_func_hijack(struct dk_func *pf)
{
	int err;

	if (pf->hijacked)
		return 0;
	/* -EBUSY here: another IPMODIFY user (a livepatch) owns the function. */
	err = register_ftrace_function(&pf->ops);
	if (err)
		return err;
	pf->hijacked = true;
	return 0;
}

/* Release: a handler that sees v sees it fully set up (its impl, its counters). */
void dk_func_set_slot(struct dk_func *pf, struct dk_version *v)
{
	smp_store_release(&pf->slot, v);
}

static void dk_func_unhijack(struct dk_func *pf)
{
	if (!pf->hijacked)
		return;
	WRITE_ONCE(pf->slot, NULL);
	/* ftrace waits for every handler still running on the old trampoline. */
	WARN_ON(unregister_ftrace_function(&pf->ops));
	pf->hijacked = false;
}

static void dk_func_free(struct dk_func *pf)
{
	dk_func_unhijack(pf);
	list_del(&pf->node);
	ftrace_free_filter(&pf->ops);
	kfree(pf);
}

void dk_func_release(struct dk_func *pf)
{
	if (pf->slot)
		return;
	dk_func_unhijack(pf);
	if (list_empty(&pf->versions))
		dk_func_free(pf);
}

/*
 * The module holding a patch point leaves (its exit has run): its code goes
 * away, so the redirect must go first, as livepatch does at MODULE_STATE_GOING.
 */
void dk_func_going(struct module *mod)
{
	struct dk_func *pf, *tmp;
	struct dk_version *v;

	list_for_each_entry_safe(pf, tmp, &dk_funcs, node) {
		if (!within_module(pf->addr, mod))
			continue;
		v = pf->slot;
		dk_func_unhijack(pf);
		if (v) {
			pr_info("dynamos: %s: module %s leaves, version %s no longer installed\n",
				pf->name, mod->name, v->name);
			v->installed = false;
			dk_version_left_slot(v);
		}
		dk_updates_forget_func(pf);
		/* Versions stay registered, pointing at no function, until their module leaves. */
		while (!list_empty(&pf->versions)) {
			v = list_first_entry(&pf->versions, struct dk_version, node);
			list_del_init(&v->node);
			v->pf = NULL;
		}
		dk_func_free(pf);
	}
}

void dk_funcs_cleanup(void)
{
	struct dk_func *pf, *tmp;

	list_for_each_entry_safe(pf, tmp, &dk_funcs, node)
		dk_func_free(pf);
}
