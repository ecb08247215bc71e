// SPDX-License-Identifier: GPL-2.0
/*
 * Updates: the policy. An update changes the slots of a set of functions, all
 * or none; it gets an id, and reverting it restores the versions it replaced.
 * Updates stack: a revert is refused while a later update still owns one of
 * its functions.
 *
 * Consistency model (drain): a switch takes effect for every call that starts
 * after it; activations already running finish in the version they started in.
 * A set of several functions is switched inside stop_machine(), so no call
 * observes some of the set switched and others not.
 */
#include <linux/slab.h>
#include <linux/stop_machine.h>

#include "engine.h"

struct dk_update {
	struct list_head node;
	u64 id;
	int n;
	struct dk_change set[];
};

static LIST_HEAD(dk_updates);
static u64 dk_next_id = 1;

static const char *vname(struct dk_version *v)
{
	return v ? v->name : "original";
}

struct dk_commit_ctx {
	struct dk_change *set;
	int n;
	bool reverse;
};

static int dk_commit_fn(void *data)
{
	struct dk_commit_ctx *c = data;
	int i;

	for (i = 0; i < c->n; i++)
		dk_func_set_slot(c->set[i].pf, c->reverse ? c->set[i].from : c->set[i].to);
	return 0;
}

/* Switches every function of the set from `from` to `to` (or back). Caller holds dk_lock. */
static int dk_switch(struct dk_change *set, int n, bool reverse, char *why, size_t whylen)
{
	bool took[DK_MAX_SET] = {}, hijacked[DK_MAX_SET] = {};
	struct dk_commit_ctx ctx = { set, n, reverse };
	int i, err = 0;

	for (i = 0; i < n; i++) {
		struct dk_version *to = reverse ? set[i].from : set[i].to;

		if (to && !to->held) {
			err = dk_version_hold(to);
			if (err) {
				snprintf(why, whylen, "%s: version %s: its module is unloading",
					 set[i].pf->name, to->name);
				goto undo;
			}
			took[i] = true;
		}
		if (to && !set[i].pf->hijacked) {
			err = dk_func_hijack(set[i].pf);
			if (err) {
				snprintf(why, whylen, "%s: cannot hijack with ftrace (error %d%s)",
					 set[i].pf->name, err,
					 err == -EBUSY ? ": another live patch owns it" : "");
				goto undo;
			}
			hijacked[i] = true;
		}
	}

	if (n == 1)
		dk_commit_fn(&ctx);
	else
		stop_machine(dk_commit_fn, &ctx, NULL);

	for (i = 0; i < n; i++) {
		struct dk_version *from = reverse ? set[i].to : set[i].from;
		struct dk_version *to = reverse ? set[i].from : set[i].to;

		if (from) {
			from->installed = false;
			dk_version_left_slot(from);
		}
		if (to)
			to->installed = true;
		else
			dk_func_release(set[i].pf); /* back to the original: no ftrace cost */
	}
	return 0;

undo:
	for (i = 0; i < n; i++) {
		if (hijacked[i])
			dk_func_release(set[i].pf);
		if (took[i]) {
			struct dk_version *to = reverse ? set[i].from : set[i].to;

			to->held = false;
			module_put(to->owner);
		}
	}
	return err;
}

static struct dk_update *dk_update_last_touching(struct dk_func *pf)
{
	struct dk_update *u;
	int i;

	list_for_each_entry_reverse(u, &dk_updates, node)
		for (i = 0; i < u->n; i++)
			if (u->set[i].pf == pf)
				return u;
	return NULL;
}

int dk_update_apply(struct dk_change *set, int n, u64 *id, char *why, size_t whylen)
{
	struct dk_update *u;
	int i, j, err;

	if (n < 1 || n > DK_MAX_SET) {
		snprintf(why, whylen, "an update changes 1 to %d functions", DK_MAX_SET);
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		set[i].from = set[i].pf->slot;
		if (set[i].from == set[i].to) {
			snprintf(why, whylen, "%s already runs %s", set[i].pf->name,
				 vname(set[i].to));
			return -EALREADY;
		}
		for (j = 0; j < i; j++)
			if (set[j].pf == set[i].pf) {
				snprintf(why, whylen, "%s named twice", set[i].pf->name);
				return -EINVAL;
			}
	}
	u = kmalloc(struct_size(u, set, n), GFP_KERNEL);
	if (!u)
		return -ENOMEM;
	err = dk_switch(set, n, false, why, whylen);
	if (err) {
		kfree(u);
		return err;
	}
	u->id = dk_next_id++;
	u->n = n;
	memcpy(u->set, set, n * sizeof(*set));
	list_add_tail(&u->node, &dk_updates);
	*id = u->id;
	return 0;
}

int dk_update_revert(u64 id, char *why, size_t whylen)
{
	struct dk_update *u, *found = NULL;
	int i, err;

	list_for_each_entry(u, &dk_updates, node)
		if (u->id == id)
			found = u;
	if (!found) {
		snprintf(why, whylen, "no update %llu", id);
		return -ENOENT;
	}
	for (i = 0; i < found->n; i++) {
		struct dk_change *c = &found->set[i];
		struct dk_update *last = dk_update_last_touching(c->pf);

		if (last != found) {
			snprintf(why, whylen,
				 "%s was changed again by update %llu: revert that first",
				 c->pf->name, last->id);
			return -EBUSY;
		}
	}
	err = dk_switch(found->set, found->n, true, why, whylen);
	if (err)
		return err;
	list_del(&found->node);
	kfree(found);
	return 0;
}

static bool dk_update_touches(struct dk_update *u, struct dk_version *v, struct dk_func *pf)
{
	int i;

	for (i = 0; i < u->n; i++)
		if ((v && (u->set[i].from == v || u->set[i].to == v)) || (pf && u->set[i].pf == pf))
			return true;
	return false;
}

/* A version or function goes away: updates naming it can no longer be reverted. */
static void dk_updates_forget(struct dk_version *v, struct dk_func *pf)
{
	struct dk_update *u, *tmp;

	list_for_each_entry_safe(u, tmp, &dk_updates, node) {
		if (!dk_update_touches(u, v, pf))
			continue;
		pr_info("dynamos: update %llu forgotten: %s %s leaves\n", u->id,
			v ? "version" : "function", v ? v->name : pf->name);
		list_del(&u->node);
		kfree(u);
	}
}

void dk_updates_forget_version(struct dk_version *v)
{
	dk_updates_forget(v, NULL);
}

void dk_updates_forget_func(struct dk_func *pf)
{
	dk_updates_forget(NULL, pf);
}

void dk_updates_show(char *buf, size_t len, size_t *pos)
{
	struct dk_update *u;
	int i;

	list_for_each_entry(u, &dk_updates, node) {
		dk_append(buf, len, pos, "update %llu", u->id);
		for (i = 0; i < u->n; i++)
			dk_append(buf, len, pos, " %s:%s->%s", u->set[i].pf->name,
				  vname(u->set[i].from), vname(u->set[i].to));
		dk_append(buf, len, pos, "\n");
	}
}

void dk_updates_cleanup(void)
{
	struct dk_update *u, *tmp;

	list_for_each_entry_safe(u, tmp, &dk_updates, node) {
		list_del(&u->node);
		kfree(u);
	}
}
