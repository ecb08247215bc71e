// SPDX-License-Identifier: GPL-2.0
/*
 * Probes: performance monitoring injected into running kernel functions. A
 * probe counts the calls of a function and sums their durations, entry to
 * return, sleeping included. It is a kretprobe rather than a slot version:
 * a probe must not exclude the function's redirect, and a kretprobe composes
 * with an IPMODIFY ops on the same function where a second IPMODIFY would not.
 */
#include <linux/kprobes.h>
#include <linux/ktime.h>
#include <linux/slab.h>

#include "engine.h"

struct dk_probe {
	struct list_head node;
	char name[KSYM_NAME_LEN];
	struct kretprobe rp;
	atomic64_t calls, total_ns;
};

static LIST_HEAD(dk_probes);

static int dk_probe_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	*(u64 *)ri->data = ktime_get_ns();
	return 0;
}

static int dk_probe_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct dk_probe *p = container_of(get_kretprobe(ri), struct dk_probe, rp);

	atomic64_inc(&p->calls);
	atomic64_add(ktime_get_ns() - *(u64 *)ri->data, &p->total_ns);
	return 0;
}

static struct dk_probe *dk_probe_find(const char *name)
{
	struct dk_probe *p;

	list_for_each_entry(p, &dk_probes, node)
		if (!strcmp(p->name, name))
			return p;
	return NULL;
}

int dk_probe_add(const char *name, char *why, size_t whylen)
{
	struct dk_probe *p;
	int err;

	if (dk_probe_find(name)) {
		snprintf(why, whylen, "%s is probed already", name);
		return -EEXIST;
	}
	if (strlen(name) >= KSYM_NAME_LEN)
		return -ENAMETOOLONG;
	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p)
		return -ENOMEM;
	strscpy(p->name, name, sizeof(p->name));
	p->rp.kp.symbol_name = p->name;
	p->rp.entry_handler = dk_probe_entry;
	p->rp.handler = dk_probe_return;
	p->rp.data_size = sizeof(u64);
	p->rp.maxactive = 64 * num_possible_cpus(); /* vfs_read sleeps: many may be in flight */
	err = register_kretprobe(&p->rp);
	if (err) {
		snprintf(why, whylen, "%s: cannot probe (error %d%s)", name, err,
			 err == -ENOENT || err == -EINVAL ? ": no such probeable function" : "");
		kfree(p);
		return err;
	}
	list_add_tail(&p->node, &dk_probes);
	return 0;
}

static void dk_probe_free(struct dk_probe *p)
{
	unregister_kretprobe(&p->rp);
	list_del(&p->node);
	kfree(p);
}

int dk_probe_remove(const char *name, char *why, size_t whylen)
{
	struct dk_probe *p = dk_probe_find(name);

	if (!p) {
		snprintf(why, whylen, "%s is not probed", name);
		return -ENOENT;
	}
	dk_probe_free(p);
	return 0;
}

void dk_probes_show(char *buf, size_t len, size_t *pos)
{
	struct dk_probe *p;

	list_for_each_entry(p, &dk_probes, node)
		dk_append(buf, len, pos, "probe %s calls=%lld total_ns=%lld missed=%d\n", p->name,
			  (long long)atomic64_read(&p->calls),
			  (long long)atomic64_read(&p->total_ns), p->rp.nmissed);
}

void dk_probes_cleanup(void)
{
	struct dk_probe *p, *tmp;

	list_for_each_entry_safe(p, tmp, &dk_probes, node)
		dk_probe_free(p);
}
