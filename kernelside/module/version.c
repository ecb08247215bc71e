// SPDX-License-Identifier: GPL-2.0
/*
 * Versions: registration by update modules, use counts, and the module pinning
 * that keeps a version's code alive while it may run.
 *
 * Invariant: v->held (the engine owns a reference on v->owner) whenever v is
 * installed in a slot or may still have activations. A version leaves its slot
 * in update.c; it is then "draining" until the drain work has seen, after the
 * waits below, that every activation counted on entry has been counted on exit.
 * Only then is the reference dropped and rmmod of the update module possible.
 */
#include <linux/percpu.h>
#include <linux/rcupdate.h>
#include <linux/workqueue.h>

#include "engine.h"

static LIST_HEAD(dk_draining);
static void dk_drain_work(struct work_struct *work);
static DECLARE_DELAYED_WORK(dk_drain, dk_drain_work);

#define DK_DRAIN_PERIOD msecs_to_jiffies(20)

struct dk_version *dk_version_find(struct dk_func *pf, const char *name)
{
	struct dk_version *v;

	list_for_each_entry(v, &pf->versions, node)
		if (!strcmp(v->name, name))
			return v;
	return NULL;
}

int dk_register_version(struct dk_version *v)
{
	struct dk_func *pf;
	int err;

	if (!v->func || !v->name || !v->impl || !v->owner)
		return -EINVAL;
	if (!strcmp(v->name, "original") || strchr(v->name, ' ') || strchr(v->name, '='))
		return -EINVAL;
	v->count = alloc_percpu(struct dk_version_count);
	if (!v->count)
		return -ENOMEM;
	INIT_LIST_HEAD(&v->node);
	INIT_LIST_HEAD(&v->drain_node);
	v->installed = v->held = v->draining = false;

	mutex_lock(&dk_lock);
	pf = dk_func_get(v->func, &err);
	if (!pf)
		goto fail;
	if (dk_version_find(pf, v->name)) {
		err = -EEXIST;
		goto fail;
	}
	v->pf = pf;
	list_add_tail(&v->node, &pf->versions);
	mutex_unlock(&dk_lock);
	pr_info("dynamos: %s: version %s registered by %s\n", v->func, v->name, v->owner->name);
	return 0;
fail:
	mutex_unlock(&dk_lock);
	free_percpu(v->count);
	v->count = NULL;
	pr_err("dynamos: %s: cannot register version %s: error %d\n", v->func, v->name, err);
	return err;
}
EXPORT_SYMBOL_GPL(dk_register_version);

void dk_unregister_version(struct dk_version *v)
{
	struct dk_func *pf;

	if (!v->count)
		return;
	mutex_lock(&dk_lock);
	/* The owner is unloading, so its reference count was zero: not held. */
	WARN_ON(v->installed || v->held);
	dk_updates_forget_version(v);
	pf = v->pf;
	v->pf = NULL;
	if (pf) {
		list_del_init(&v->node);
		dk_func_release(pf);
	}
	mutex_unlock(&dk_lock);
	free_percpu(v->count);
	v->count = NULL;
}
EXPORT_SYMBOL_GPL(dk_unregister_version);

int dk_version_hold(struct dk_version *v)
{
	if (v->held)
		return 0;
	if (!try_module_get(v->owner))
		return -ENODEV; /* its module is on its way out */
	v->held = true;
	return 0;
}

void dk_version_left_slot(struct dk_version *v)
{
	v->gen++;
	if (!v->draining) {
		v->draining = true;
		list_add_tail(&v->drain_node, &dk_draining);
	}
	mod_delayed_work(system_wq, &dk_drain, DK_DRAIN_PERIOD);
}

unsigned long dk_version_calls(struct dk_version *v)
{
	unsigned long sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += per_cpu_ptr(v->count, cpu)->enter;
	return sum;
}

/*
 * Both counters only grow. Summing exits before entries (with a full barrier
 * between) can overestimate the number in flight, never underestimate it.
 */
long dk_version_inflight(struct dk_version *v)
{
	unsigned long exits = 0, enters = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		exits += READ_ONCE(per_cpu_ptr(v->count, cpu)->exit);
	smp_mb();
	for_each_possible_cpu(cpu)
		enters += READ_ONCE(per_cpu_ptr(v->count, cpu)->enter);
	return (long)(enters - exits);
}

static void dk_drain_work(struct work_struct *work)
{
	struct dk_version *v, *tmp;
	bool again = false;

	mutex_lock(&dk_lock);
	list_for_each_entry(v, &dk_draining, drain_node)
		v->drain_gen = v->gen;
	mutex_unlock(&dk_lock);

	/*
	 * After a grace period no handler is still between reading a slot that
	 * held one of these versions and counting the entry (dk_ftrace_handler).
	 */
	synchronize_rcu();

	mutex_lock(&dk_lock);
	list_for_each_entry_safe(v, tmp, &dk_draining, drain_node) {
		if (v->installed) { /* back in its slot: stays held, not draining */
			list_del_init(&v->drain_node);
			v->draining = false;
			continue;
		}
		if (v->gen != v->drain_gen || dk_version_inflight(v) != 0)
			v->drain_gen = v->gen - 1; /* not yet: look again next round */
	}
	mutex_unlock(&dk_lock);

	/*
	 * An activation counts its exit a few instructions before its return:
	 * every task has since passed a voluntary schedule, so none is in those.
	 */
	synchronize_rcu_tasks();

	mutex_lock(&dk_lock);
	list_for_each_entry_safe(v, tmp, &dk_draining, drain_node) {
		if (v->installed || v->gen != v->drain_gen) {
			again = true;
			continue;
		}
		list_del_init(&v->drain_node);
		v->draining = false;
		v->held = false;
		module_put(v->owner);
	}
	if (again || !list_empty(&dk_draining))
		mod_delayed_work(system_wq, &dk_drain, DK_DRAIN_PERIOD);
	mutex_unlock(&dk_lock);
}

int dk_versions_init(void)
{
	return 0;
}

void dk_versions_exit(void)
{
	cancel_delayed_work_sync(&dk_drain);
}
