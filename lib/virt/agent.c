/* What a running QEMU guest does for us through qemu-guest-agent: its file
 * systems read and grown into a larger disk, its vCPUs brought online. */
#include "virt.h"
#include "error.h"
#include "log.h"
#include "util.h"

#include <json-c/json.h>
#include <libvirt/libvirt-qemu.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AGENT_TIMEOUT_S 10
#define EXEC_POLL_MS 100
/* resize2fs under TCG on a large disk takes a while. */
#define EXEC_TIMEOUT_MS 120000

/* libvirt's error from a call through the agent: VI_ESTATE when the agent
 * does not answer, else "cannot WHAT 'NAME'" with libvirt's reason. */
static int agent_error(const struct vi_hv_vm *vm, const char *what)
{
	const virError *err = virGetLastError();

	if (err && err->code == VIR_ERR_AGENT_UNRESPONSIVE)
		return vi_error(VI_ESTATE,
				"the guest agent of '%s' does not answer: the guest needs "
				"qemu-guest-agent running on port %s",
				vm->name, VIRT_AGENT_CHANNEL);
	return virt_error("cannot %s '%s'", what, vm->name);
}

/* The agent's reply to command (a JSON object) in *ret, the value of its
 * "return" (the caller puts it). VI_ESTATE when the agent does not answer. */
static int agent_call(virDomainPtr dom, const struct vi_hv_vm *vm, json_object *command,
		      json_object **ret)
{
	const char *text = json_object_to_json_string_ext(command, JSON_C_TO_STRING_PLAIN);
	char *reply = virDomainQemuAgentCommand(dom, text, AGENT_TIMEOUT_S, 0);
	json_object *doc, *r;
	int rc = 0;

	if (!reply)
		return agent_error(vm, "ask the guest agent of");
	doc = json_tokener_parse(reply);
	if (doc && json_object_object_get_ex(doc, "return", &r))
		*ret = json_object_get(r);
	else
		rc = vi_error(VI_EFAIL, "the guest agent of '%s' answered what vi cannot read",
			      vm->name);
	json_object_put(doc);
	free(reply);
	return rc;
}

/* {"execute": name, "arguments": args}; takes args (may be NULL). */
static json_object *agent_command(const char *name, json_object *args)
{
	json_object *c = json_object_new_object();

	json_object_object_add(c, "execute", json_object_new_string(name));
	if (args)
		json_object_object_add(c, "arguments", args);
	return c;
}

static uint64_t json_u64(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

static bool json_true(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

/* The agent's base64 output, decoded into a new string, trimmed of its last
 * newline; "" when there is none. */
static char *b64_text(json_object *status, const char *key)
{
	static const char digits[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	json_object *v;
	const char *in = json_object_object_get_ex(status, key, &v) ? json_object_get_string(v) : "";
	size_t n = 0, len = in ? strlen(in) : 0;
	char *out = xmalloc(len * 3 / 4 + 2);
	unsigned acc = 0, bits = 0;

	for (size_t i = 0; i < len; i++) {
		const char *d = strchr(digits, in[i]);
		if (!d || !in[i])
			continue;
		acc = (acc << 6) | (unsigned)(d - digits);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (char)((acc >> bits) & 0xff);
		}
	}
	while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		n--;
	out[n] = '\0';
	return out;
}

/* Runs `sh -c script sh args...` in the guest and waits for it: 0 when it
 * exits 0, else VI_EFAIL with what it wrote on stderr. */
static int agent_sh(virDomainPtr dom, const struct vi_hv_vm *vm, const char *what,
		    const char *script, const char *const *args)
{
	json_object *a = json_object_new_object(), *argv = json_object_new_array(), *ret = NULL;
	const struct timespec poll = { 0, EXEC_POLL_MS * 1000000L };
	double start = vi_now_ms();
	int64_t pid;
	int rc;

	json_object_array_add(argv, json_object_new_string("-c"));
	json_object_array_add(argv, json_object_new_string(script));
	json_object_array_add(argv, json_object_new_string("sh"));
	for (; *args; args++)
		json_object_array_add(argv, json_object_new_string(*args));
	json_object_object_add(a, "path", json_object_new_string("/bin/sh"));
	json_object_object_add(a, "arg", argv);
	json_object_object_add(a, "capture-output", json_object_new_boolean(1));
	json_object *c = agent_command("guest-exec", a);
	rc = agent_call(dom, vm, c, &ret);
	json_object_put(c);
	if (rc)
		return rc;
	pid = (int64_t)json_u64(ret, "pid");
	json_object_put(ret);
	for (;;) {
		a = json_object_new_object();
		json_object_object_add(a, "pid", json_object_new_int64(pid));
		c = agent_command("guest-exec-status", a);
		ret = NULL;
		rc = agent_call(dom, vm, c, &ret);
		json_object_put(c);
		if (rc)
			return rc;
		if (json_true(ret, "exited"))
			break;
		json_object_put(ret);
		if (vi_ms_since(start) >= EXEC_TIMEOUT_MS)
			return vi_error(VI_ETIMEOUT, "%s in '%s' did not finish within %d s", what,
					vm->name, EXEC_TIMEOUT_MS / 1000);
		nanosleep(&poll, NULL);
	}
	if (json_u64(ret, "exitcode") != 0) {
		char *err = b64_text(ret, "err-data");
		rc = vi_error(VI_EFAIL, "%s in '%s' failed%s%s", what, vm->name, *err ? ": " : "",
			      err);
		free(err);
	}
	json_object_put(ret);
	return rc;
}

/* --- file systems ---------------------------------------------------------- */

static const char *param_str(const virTypedParameter *p, int n, const char *field)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(p[i].field, field) && p[i].type == VIR_TYPED_PARAM_STRING)
			return p[i].value.s;
	return NULL;
}

static uint64_t param_num(const virTypedParameter *p, int n, const char *field)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(p[i].field, field)) {
			switch (p[i].type) {
			case VIR_TYPED_PARAM_UINT:
				return p[i].value.ui;
			case VIR_TYPED_PARAM_ULLONG:
				return p[i].value.ul;
			case VIR_TYPED_PARAM_LLONG:
				return p[i].value.l < 0 ? 0 : (uint64_t)p[i].value.l;
			case VIR_TYPED_PARAM_INT:
				return p[i].value.i < 0 ? 0 : (uint64_t)p[i].value.i;
			}
		}
	return 0;
}

/* A device name the guest gave, fit to hand back to it: "vda1", "dm-0". */
static bool plain_name(const char *s)
{
	if (!s || !*s || strlen(s) >= 32)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return false;
	return true;
}

/* What the guest says of the file system on disk `target` (vda...): the root
 * when it is there, else the first one mounted from it. *disk_name gets the
 * guest's name of the whole disk. VI_ENOTFOUND when none is. */
static int find_fs(virDomainPtr dom, const struct vi_hv_vm *vm, const char *target,
		   struct vi_hv_fs_info *out, char *disk_name, size_t disk_len)
{
	virTypedParameterPtr p = NULL;
	int n = 0, found = -1, rc = 0;
	char key[64];

	if (virDomainGetGuestInfo(dom, VIR_DOMAIN_GUEST_INFO_FILESYSTEM, &p, &n, 0) < 0) {
		return agent_error(vm, "read the file systems of");
	}
	unsigned count = (unsigned)param_num(p, n, "fs.count");
	for (unsigned i = 0; i < count; i++) {
		snprintf(key, sizeof(key), "fs.%u.disk.count", i);
		unsigned ndisks = (unsigned)param_num(p, n, key);
		bool ours = false;
		for (unsigned d = 0; d < ndisks && !ours; d++) {
			snprintf(key, sizeof(key), "fs.%u.disk.%u.alias", i, d);
			const char *alias = param_str(p, n, key);
			ours = alias && !strcmp(alias, target);
		}
		if (!ours)
			continue;
		snprintf(key, sizeof(key), "fs.%u.mountpoint", i);
		const char *mnt = param_str(p, n, key);
		if (found < 0 || (mnt && !strcmp(mnt, "/")))
			found = (int)i;
	}
	if (found < 0) {
		rc = vi_error(VI_ENOTFOUND, "the guest of '%s' has no file system mounted from %s",
			      vm->name, target);
		goto out;
	}
	const char *name, *type, *mnt;
	snprintf(key, sizeof(key), "fs.%d.name", found);
	name = param_str(p, n, key);
	snprintf(key, sizeof(key), "fs.%d.fstype", found);
	type = param_str(p, n, key);
	snprintf(key, sizeof(key), "fs.%d.mountpoint", found);
	mnt = param_str(p, n, key);
	snprintf(key, sizeof(key), "fs.%d.total-bytes", found);
	out->size_before = out->size_after = param_num(p, n, key);
	snprintf(out->type, sizeof(out->type), "%s", type ? type : "");
	snprintf(out->mountpoint, sizeof(out->mountpoint), "%s", mnt ? mnt : "");
	if (!plain_name(name)) {
		rc = vi_error(VI_EFAIL, "the guest of '%s' names its file system on %s oddly: '%s'",
			      vm->name, target, name ? name : "");
		goto out;
	}
	snprintf(out->device, sizeof(out->device), "/dev/%s", name);
	/* The guest's name of the whole disk: the partition's name without its
	 * number (vda1: vda; nvme0n1p1: nvme0n1), or the device itself. */
	size_t len = strlen(name);
	while (len && name[len - 1] >= '0' && name[len - 1] <= '9')
		len--;
	out->partition = len < strlen(name) && len >= strlen(target) ? (unsigned)atoi(name + len)
								    : 0;
	if (out->partition && len >= 2 && name[len - 1] == 'p' && name[len - 2] >= '0' &&
	    name[len - 2] <= '9')
		len--;
	snprintf(disk_name, disk_len, "%.*s", (int)(out->partition ? len : strlen(name)), name);
out:
	virTypedParamsFree(p, n);
	return rc;
}

/* Run in the guest: the partition grown into the rest of its disk (on disk
 * first, then in the kernel's view, while mounted), then its file system. */
static const char grow_script[] =
	"set -e\n"
	"PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
	"dev=$1 disk=$2 part=$3 type=$4 mnt=$5\n"
	"if [ \"$part\" != 0 ]; then\n"
	"\techo ', +' | sfdisk -q -N \"$part\" --no-reread --no-tell-kernel --force "
	"\"/dev/$disk\" >/dev/null\n"
	"\tpartx -u --nr \"$part\" \"/dev/$disk\"\n"
	"fi\n"
	"case $type in\n"
	"ext2 | ext3 | ext4) out=$(resize2fs \"$dev\" 2>&1) || { echo \"$out\" >&2; exit 1; } ;;\n"
	"xfs) xfs_growfs \"$mnt\" >/dev/null ;;\n"
	"esac\n";

static bool growable(const char *type)
{
	return !strcmp(type, "ext2") || !strcmp(type, "ext3") || !strcmp(type, "ext4") ||
	       !strcmp(type, "xfs");
}

int virt_grow_fs(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t disk, unsigned flags,
		 struct vi_hv_fs_info *out)
{
	char target[32], disk_name[32], part[16];
	virDomainPtr dom;
	int rc;

	if (disk >= vm->ndisks)
		return vi_error(VI_ENOTFOUND, "'%s' has no disk %zu", vm->name, disk);
	rc = virt_lookup(ctx, vm, &dom);
	if (rc)
		return rc;
	if (virDomainIsActive(dom) != 1) {
		rc = vi_error(VI_ESTATE, "'%s' is not running", vm->name);
		goto cleanup;
	}
	virt_disk_target(target, sizeof(target), "vd", disk);
	rc = find_fs(dom, vm, target, out, disk_name, sizeof(disk_name));
	if (rc || (flags & VI_HV_GROW_FS_CHECK))
		goto cleanup;
	if (!growable(out->type)) {
		rc = vi_error(VI_EUNSUPPORTED,
			      "the file system on %s of '%s' is %s: vi grows ext2, ext3, ext4 and "
			      "xfs only",
			      out->device, vm->name, *out->type ? out->type : "of no known type");
		goto cleanup;
	}
	snprintf(part, sizeof(part), "%u", out->partition);
	const char *args[] = { out->device, disk_name, part, out->type,
			       *out->mountpoint ? out->mountpoint : "/", NULL };
	rc = agent_sh(dom, vm, "growing the file system", grow_script, args);
	if (rc == 0) {
		/* Read again: the size it has now. */
		struct vi_hv_fs_info after = { .struct_size = sizeof(after) };
		if (find_fs(dom, vm, target, &after, disk_name, sizeof(disk_name)) == 0)
			out->size_after = after.size_after;
		vi_error_clear();
	}
cleanup:
	virDomainFree(dom);
	return rc;
}

/* --- vCPUs ------------------------------------------------------------------- */

#define VCPU_WAIT_MS 20000

/* The guest brings its vCPUs online up to n once it has seen the hot-added
 * ones (Linux adds them offline and leaves them so without udev). Without an
 * agent it is left to the guest, with a warning. */
int virt_guest_vcpus_online(virDomainPtr dom, const struct vi_hv_vm *vm, unsigned n)
{
	const struct timespec poll = { 0, EXEC_POLL_MS * 1000000L };
	double start = vi_now_ms();

	for (;;) {
		int seen = virDomainGetVcpusFlags(dom, VIR_DOMAIN_VCPU_GUEST | VIR_DOMAIN_VCPU_MAXIMUM);
		if (seen < 0) {
			vi_warn("'%s' has %u vCPUs, which its guest brings online itself: its "
				"guest agent does not answer",
				vm->name, n);
			virResetLastError();
			return 0;
		}
		if ((unsigned)seen >= n)
			break;
		if (vi_ms_since(start) >= VCPU_WAIT_MS)
			return vi_error(VI_ETIMEOUT, "the guest of '%s' sees %d of its %u vCPUs",
					vm->name, seen, n);
		nanosleep(&poll, NULL);
	}
	int online = virDomainGetVcpusFlags(dom, VIR_DOMAIN_VCPU_GUEST);
	if (online >= 0 && (unsigned)online == n)
		return 0;
	if (virDomainSetVcpusFlags(dom, n, VIR_DOMAIN_VCPU_GUEST) < 0)
		return virt_error("the guest of '%s' cannot bring %u vCPUs online", vm->name, n);
	return 0;
}
