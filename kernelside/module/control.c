// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/dynamos: the control interface. A transaction file, as nfsd's control
 * files are: write one command, then read its reply on the same descriptor.
 * A failing command fails its write() with the errno and leaves
 * "error: <what went wrong>" as the reply. Reading without a command gives a
 * status snapshot, taken under one lock so that it is consistent.
 *
 *   switch FUNC VERSION [FUNC VERSION...]  one update, all or none -> "ok update=ID"
 *   revert ID                              -> "ok"
 *   probe FUNC... / unprobe FUNC...        -> "ok"
 *   status                                 -> the status snapshot
 *
 * Status lines: "function NAME hijacked=0|1 slot=VERSION",
 * "version FUNC NAME module=M state=installed|draining|idle calls=N inflight=N",
 * "update ID FUNC:FROM->TO...", "probe FUNC calls=N total_ns=N missed=N".
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "engine.h"

#define DK_REPLY_SIZE (64 * 1024)
#define DK_CMD_SIZE 1024

struct dk_session {
	struct mutex lock; /* one command and its reply at a time per descriptor */
	char *buf;
	size_t len;
	bool has_reply;
};

void dk_append(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
	va_list args;

	if (*pos >= len)
		return;
	va_start(args, fmt);
	*pos += vscnprintf(buf + *pos, len - *pos, fmt, args);
	va_end(args);
}

static void dk_status(char *buf, size_t len, size_t *pos)
{
	struct dk_func *pf;
	struct dk_version *v;

	list_for_each_entry(pf, &dk_funcs, node) {
		dk_append(buf, len, pos, "function %s hijacked=%d slot=%s\n", pf->name,
			  pf->hijacked, pf->slot ? pf->slot->name : "original");
		list_for_each_entry(v, &pf->versions, node)
			dk_append(buf, len, pos,
				  "version %s %s module=%s state=%s calls=%lu inflight=%ld\n",
				  pf->name, v->name, v->owner->name,
				  v->installed  ? "installed"
				  : v->draining ? "draining"
						: "idle",
				  dk_version_calls(v), dk_version_inflight(v));
	}
	dk_updates_show(buf, len, pos);
	dk_probes_show(buf, len, pos);
}

static int dk_cmd_switch(char **argv, int argc, char *out, size_t outlen)
{
	struct dk_change set[DK_MAX_SET];
	int i, n = argc / 2, err;
	u64 id;

	if (argc < 2 || argc % 2 || n > DK_MAX_SET) {
		snprintf(out, outlen,
			 "error: usage: switch FUNC VERSION [FUNC VERSION...] (at most %d)",
			 DK_MAX_SET);
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		const char *fn = argv[2 * i], *vn = argv[2 * i + 1];

		set[i].pf = dk_func_find(fn);
		if (!set[i].pf || list_empty(&set[i].pf->versions)) {
			snprintf(out, outlen, "error: %s: no version registered for this function",
				 fn);
			return -ENOENT;
		}
		set[i].to = NULL;
		if (strcmp(vn, "original")) {
			set[i].to = dk_version_find(set[i].pf, vn);
			if (!set[i].to) {
				snprintf(out, outlen, "error: %s: no version named %s", fn, vn);
				return -ENOENT;
			}
		}
	}
	err = dk_update_apply(set, n, &id, out + 7, outlen - 7);
	if (err) {
		memcpy(out, "error: ", 7);
		return err;
	}
	snprintf(out, outlen, "ok update=%llu\n", id);
	return 0;
}

static int dk_execute(char *line, char *out, size_t outlen)
{
	char *argv[2 * DK_MAX_SET + 2], *tok;
	int argc = 0, i, err = 0;
	u64 id;

	while ((tok = strsep(&line, " \t\n")) != NULL) {
		if (!*tok)
			continue;
		if (argc == ARRAY_SIZE(argv)) {
			snprintf(out, outlen, "error: too many arguments");
			return -E2BIG;
		}
		argv[argc++] = tok;
	}
	if (argc == 0) {
		snprintf(out, outlen, "error: empty command");
		return -EINVAL;
	}
	if (!strcmp(argv[0], "status") && argc == 1) {
		size_t pos = 0;

		dk_status(out, outlen, &pos);
		return 0;
	}
	if (!strcmp(argv[0], "switch"))
		return dk_cmd_switch(argv + 1, argc - 1, out, outlen);
	if (!strcmp(argv[0], "revert")) {
		if (argc != 2 || kstrtou64(argv[1], 10, &id)) {
			snprintf(out, outlen, "error: usage: revert ID");
			return -EINVAL;
		}
		err = dk_update_revert(id, out + 7, outlen - 7);
	} else if (!strcmp(argv[0], "probe") || !strcmp(argv[0], "unprobe")) {
		bool add = argv[0][0] == 'p';

		if (argc < 2) {
			snprintf(out, outlen, "error: usage: %s FUNC...", argv[0]);
			return -EINVAL;
		}
		for (i = 1; i < argc && !err; i++)
			err = add ? dk_probe_add(argv[i], out + 7, outlen - 7)
				  : dk_probe_remove(argv[i], out + 7, outlen - 7);
	} else {
		snprintf(out, outlen, "error: unknown command %s (switch, revert, probe, unprobe)",
			 argv[0]);
		return -EINVAL;
	}
	if (err)
		memcpy(out, "error: ", 7);
	else
		snprintf(out, outlen, "ok\n");
	return err;
}

static int dk_open(struct inode *inode, struct file *file)
{
	struct dk_session *s = kzalloc(sizeof(*s), GFP_KERNEL);

	if (!s)
		return -ENOMEM;
	s->buf = kvmalloc(DK_REPLY_SIZE, GFP_KERNEL);
	if (!s->buf) {
		kfree(s);
		return -ENOMEM;
	}
	mutex_init(&s->lock);
	file->private_data = s;
	return 0;
}

static int dk_release(struct inode *inode, struct file *file)
{
	struct dk_session *s = file->private_data;

	kvfree(s->buf);
	kfree(s);
	return 0;
}

static ssize_t dk_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	struct dk_session *s = file->private_data;
	ssize_t n;

	mutex_lock(&s->lock);
	if (!s->has_reply && *ppos == 0) {
		s->len = 0;
		mutex_lock(&dk_lock);
		dk_status(s->buf, DK_REPLY_SIZE, &s->len);
		mutex_unlock(&dk_lock);
	}
	n = simple_read_from_buffer(ubuf, count, ppos, s->buf, s->len);
	mutex_unlock(&s->lock);
	return n;
}

static ssize_t dk_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	struct dk_session *s = file->private_data;
	char line[DK_CMD_SIZE];
	int err;

	if (count >= sizeof(line))
		return -E2BIG;
	if (copy_from_user(line, ubuf, count))
		return -EFAULT;
	line[count] = '\0';
	mutex_lock(&s->lock);
	s->buf[0] = '\0';
	mutex_lock(&dk_lock);
	err = dk_execute(line, s->buf, DK_REPLY_SIZE);
	mutex_unlock(&dk_lock);
	s->len = strnlen(s->buf, DK_REPLY_SIZE);
	s->has_reply = true;
	*ppos = 0; /* the reply is read from its start */
	mutex_unlock(&s->lock);
	return err ? err : count;
}

static const struct file_operations dk_fops = {
	.owner = THIS_MODULE,
	.open = dk_open,
	.release = dk_release,
	.read = dk_read,
	.write = dk_write,
	.llseek = no_llseek,
};

static struct miscdevice dk_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "dynamos",
	.fops = &dk_fops,
	.mode = 0600,
};

int dk_control_init(void)
{
	return misc_register(&dk_misc);
}

void dk_control_exit(void)
{
	misc_deregister(&dk_misc);
}
