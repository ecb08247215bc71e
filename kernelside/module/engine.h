/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Internal interfaces of the DynAMOS kernel engine. One file per concern:
 *   func.c     patch points: resolve a function, hijack it with ftrace, the handler
 *   version.c  version registry, module pinning and draining (use counts)
 *   update.c   updates: atomic sets of slot changes, revert (policy lives here)
 *   probe.c    probes: count and time calls of chosen functions (kretprobes)
 *   control.c  /dev/dynamos: the command interface the CLI talks to
 * Locking: dk_lock (a mutex) serialises every change of state; the ftrace
 * handler takes no lock and reads a slot with READ_ONCE.
 */
#ifndef DYNAMOS_ENGINE_H
#define DYNAMOS_ENGINE_H

#include <linux/ftrace.h>
#include <linux/kallsyms.h>
#include <linux/mutex.h>

#include "dynamos_kernel.h"

#define DK_MAX_SET 16 /* functions changed by one update */

extern struct mutex dk_lock;

/* A patch point: one kernel function, hijacked once, redirected through its slot. */
struct dk_func {
	struct list_head node;
	char name[KSYM_NAME_LEN];
	unsigned long addr; /* the function's start; ftrace finds its fentry site */
	struct ftrace_ops ops;
	bool hijacked;
	struct dk_version *slot;   /* NULL: the original runs */
	struct list_head versions; /* registered struct dk_version */
};

/* func.c */
struct dk_func *dk_func_find(const char *name);
struct dk_func *dk_func_get(const char *name, int *err); /* find or resolve */
int dk_func_hijack(struct dk_func *pf);
void dk_func_release(struct dk_func *pf); /* unhijack, forget if unused */
void dk_func_set_slot(struct dk_func *pf, struct dk_version *v);
void dk_func_going(struct module *mod); /* a module leaves: drop its patch points */
void dk_funcs_cleanup(void);
extern struct list_head dk_funcs;

/* version.c */
struct dk_version *dk_version_find(struct dk_func *pf, const char *name);
int dk_version_hold(struct dk_version *v);
void dk_version_left_slot(struct dk_version *v); /* schedule its drain */
unsigned long dk_version_calls(struct dk_version *v);
long dk_version_inflight(struct dk_version *v);
int dk_versions_init(void);
void dk_versions_exit(void);

/* update.c */
struct dk_change {
	struct dk_func *pf;
	struct dk_version *from, *to; /* NULL: the original */
};
int dk_update_apply(struct dk_change *set, int n, u64 *id, char *why, size_t whylen);
int dk_update_revert(u64 id, char *why, size_t whylen);
void dk_updates_forget_version(struct dk_version *v);
void dk_updates_forget_func(struct dk_func *pf);
void dk_updates_show(char *buf, size_t len, size_t *pos);
void dk_updates_cleanup(void);

/* probe.c */
int dk_probe_add(const char *name, char *why, size_t whylen);
int dk_probe_remove(const char *name, char *why, size_t whylen);
void dk_probes_show(char *buf, size_t len, size_t *pos);
void dk_probes_cleanup(void);

/* control.c */
int dk_control_init(void);
void dk_control_exit(void);

/* Appends formatted text to buf at *pos, never past len. */
__printf(4, 5) void dk_append(char *buf, size_t len, size_t *pos, const char *fmt, ...);

#endif /* DYNAMOS_ENGINE_H */
