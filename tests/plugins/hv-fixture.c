/* A test backend "fixture" that plays a hypervisor's part without running
 * anything, so that vi's orchestration (create, clone, snapshots, restore)
 * can be tested without KVM or libvirt. State is one word in
 * run/fixture-state (fixture.h). Mechanisms:
 *   start/stop/pause/resume  change the word;
 *   save                     writes a state file naming the VM, its state
 *                            and its disks; stops the VM unless LIVE;
 *   restore                  checks the file is this VM's and its disks are
 *                            the ones saved, then runs (or pauses) the VM;
 *   switch_disks             checks each overlay is a qcow2 image backed by
 *                            the disk it replaces, and records the move in
 *                            run/fixture-disks.
 *   start, forward_add/remove write the forwards the VM has into
 *                            run/fixture-forwards, one "NIC PROTO ADDR:HOST GUEST"
 *                            a line; nic_address answers 10.0.2.15 for
 *                            a running VM's user NICs.
 * A test makes a method fail by writing its name into run/fixture-fail. */
#include "fixture.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_MAGIC "vi-fixture-state 1"

static const struct vi_host *host;

/* Written whole or not at all, as a real backend's state is: a vi killed part way
 * leaves the state before or after. */
static int set_state(const struct vi_hv_vm *vm, const char *word)
{
	char path[4096], tmp[4200];
	FILE *f;

	fixture_path(vm, "fixture-state", path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid());
	if (!(f = fopen(tmp, "w")) || fprintf(f, "%s\n", word) < 0 || fclose(f) != 0 ||
	    rename(tmp, path) != 0) {
		unlink(tmp);
		return host->error(VI_EFAIL, "cannot write '%s': %s", path, strerror(errno));
	}
	return 0;
}

/* Fails `method` when run/fixture-fail names it, or VI_FIXTURE_FAIL says
 * METHOD or METHOD:VM (for VMs that have no run directory yet). */
static int injected(const struct vi_hv_vm *vm, const char *method)
{
	const char *env = getenv("VI_FIXTURE_FAIL");
	char path[4096], word[64] = "";
	size_t len = strlen(method);
	FILE *f;

	if (env && !strncmp(env, method, len) &&
	    (!env[len] || (env[len] == ':' && !strcmp(env + len + 1, vm->name))))
		return host->error(VI_EFAIL, "fixture was told to fail %s", method);
	fixture_path(vm, "fixture-fail", path, sizeof(path));
	if (!(f = fopen(path, "r")))
		return 0;
	if (!fgets(word, sizeof(word), f))
		word[0] = '\0';
	fclose(f);
	word[strcspn(word, "\n")] = '\0';
	if (strcmp(word, method))
		return 0;
	return host->error(VI_EFAIL, "fixture was told to fail %s", method);
}

/* The fixture keeps no definition of its own: define only answers, after
 * VI_FIXTURE_DEFINE_MS milliseconds (a slow backend, for tests that kill vi
 * part way). */
static int fixture_define(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	const char *ms = getenv("VI_FIXTURE_DEFINE_MS");

	(void)ctx;
	if (ms)
		usleep((useconds_t)atoi(ms) * 1000);
	return injected(vm, "define");
}

static int need_state(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, bool live)
{
	int state = fixture_get(ctx, vm);

	if (state < 0)
		return state;
	if (live && state != VI_HV_RUNNING && state != VI_HV_PAUSED)
		return host->error(VI_ESTATE, "VM '%s' is not running", vm->name);
	if (!live && state != VI_HV_STOPPED)
		return host->error(VI_ESTATE, "VM '%s' is already running", vm->name);
	return 0;
}

static void forward_line(FILE *f, size_t nic, const struct vi_hv_forward *fw)
{
	fprintf(f, "%zu %s %s:%u %u\n", nic, fw->proto == VI_HV_UDP ? "udp" : "tcp", fw->host_addr,
		fw->host_port, fw->guest_port);
}

static int fixture_start(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	char path[4096];
	FILE *f;
	int rc = need_state(ctx, vm, false);

	if (rc == 0)
		rc = injected(vm, "start");
	if (rc)
		return rc;
	fixture_path(vm, "fixture-forwards", path, sizeof(path));
	if (!(f = fopen(path, "w")))
		return host->error(VI_EFAIL, "cannot write '%s': %s", path, strerror(errno));
	for (size_t i = 0; i < vm->nnics; i++)
		for (size_t j = 0; j < vm->nics[i]->nforwards; j++)
			forward_line(f, i, vm->nics[i]->forwards[j]);
	fclose(f);
	return set_state(vm, "running");
}

/* Rewrites run/fixture-forwards with fw added, or removed. */
static int fixture_forward(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
			   const struct vi_hv_forward *fw, bool add, const char *method)
{
	char path[4096], line[512], want[512], *text = NULL;
	size_t len = 0;
	bool found = false;
	FILE *f, *out;
	int rc = need_state(ctx, vm, true);

	if (rc == 0)
		rc = injected(vm, method);
	if (rc)
		return rc;
	fixture_path(vm, "fixture-forwards", path, sizeof(path));
	if (!(out = open_memstream(&text, &len)))
		return host->error(VI_EFAIL, "out of memory");
	forward_line(out, nic, fw);
	fflush(out);
	snprintf(want, sizeof(want), "%s", text);
	rewind(out);
	if ((f = fopen(path, "r"))) {
		while (fgets(line, sizeof(line), f)) {
			if (!strcmp(line, want)) {
				found = true;
				if (!add)
					continue;
			}
			fputs(line, out);
		}
		fclose(f);
	}
	if (add && !found)
		fputs(want, out);
	fclose(out);
	if (!add && !found)
		rc = host->error(VI_ESTATE, "no forward from host port %u", fw->host_port);
	else if (!(f = fopen(path, "w")) || fputs(text, f) < 0 || fclose(f) != 0)
		rc = host->error(VI_EFAIL, "cannot write '%s'", path);
	free(text);
	return rc;
}

static int fixture_forward_add(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
			       const struct vi_hv_forward *fw)
{
	return fixture_forward(ctx, vm, nic, fw, true, "forward_add");
}

static int fixture_forward_remove(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
				  const struct vi_hv_forward *fw)
{
	return fixture_forward(ctx, vm, nic, fw, false, "forward_remove");
}

static int fixture_nic_address(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
			       char *buf, size_t len)
{
	int rc = need_state(ctx, vm, true);

	if (rc)
		return rc;
	if (strcmp(vm->nics[nic]->mode, "user"))
		return host->error(VI_ENOTFOUND, "no address known on NIC %zu", nic);
	snprintf(buf, len, "%s", VI_HV_USER_GUEST_IP);
	return 0;
}

static int fixture_stop(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned flags,
			unsigned timeout_ms)
{
	int rc = need_state(ctx, vm, true);

	(void)flags;
	(void)timeout_ms;
	if (rc == 0)
		rc = injected(vm, "stop");
	return rc ? rc : set_state(vm, "stopped");
}

static int fixture_pause(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	int rc = need_state(ctx, vm, true);

	return rc ? rc : set_state(vm, "paused");
}

static int fixture_resume(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	int rc = need_state(ctx, vm, true);

	return rc ? rc : set_state(vm, "running");
}

static int fixture_save(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *path,
			unsigned flags)
{
	int state = fixture_get(ctx, vm), rc;
	FILE *f;

	if ((rc = need_state(ctx, vm, true)) < 0 || (rc = injected(vm, "save")) < 0)
		return rc;
	if (!(f = fopen(path, "wx")))
		return host->error(VI_EFAIL, "cannot create '%s': %s", path, strerror(errno));
	fprintf(f, "%s\n%s\n%s\n", STATE_MAGIC, vm->uuid,
		state == VI_HV_PAUSED ? "paused" : "running");
	for (size_t i = 0; i < vm->ndisks; i++)
		fprintf(f, "%s\n", vm->disks[i]->path);
	if (fclose(f) != 0) {
		unlink(path);
		return host->error(VI_EFAIL, "cannot write '%s'", path);
	}
	return flags & VI_HV_SAVE_LIVE ? 0 : set_state(vm, "stopped");
}

static int fixture_restore(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *path,
			   unsigned flags)
{
	char line[4096];
	size_t n = 0;
	int rc;
	FILE *f;

	if ((rc = need_state(ctx, vm, false)) < 0 || (rc = injected(vm, "restore")) < 0)
		return rc;
	if (!(f = fopen(path, "r")))
		return host->error(errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL, "cannot open '%s': %s",
				   path, strerror(errno));
	if (!fgets(line, sizeof(line), f) || strncmp(line, STATE_MAGIC "\n", sizeof(STATE_MAGIC)))
		rc = host->error(VI_EFAIL, "'%s' is not a fixture state file", path);
	else if (!fgets(line, sizeof(line), f) || strncmp(line, vm->uuid, strlen(vm->uuid)))
		rc = host->error(VI_EFAIL, "'%s' holds the state of another VM", path);
	else if (!fgets(line, sizeof(line), f))
		rc = host->error(VI_EFAIL, "'%s' is truncated", path);
	/* The disks must be the ones the state was saved with (by path; the
	 * host gives the VM new overlays on the same layers, which is fine). */
	while (rc == 0 && fgets(line, sizeof(line), f))
		n++;
	fclose(f);
	if (rc == 0 && n != vm->ndisks)
		rc = host->error(VI_EFAIL, "'%s' was saved with %zu disks, VM '%s' has %zu", path, n,
				 vm->name, vm->ndisks);
	if (rc < 0)
		return rc;
	return set_state(vm, flags & VI_HV_RUN_PAUSED ? "paused" : "running");
}

static uint64_t be64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* The backing file a qcow2 image names, resolved against its directory. */
static int qcow2_backing(const char *path, char out[PATH_MAX])
{
	unsigned char h[72];
	char name[1024], joined[PATH_MAX * 2];
	FILE *f = fopen(path, "rb");
	uint64_t off;
	uint32_t size;

	if (!f)
		return host->error(VI_EFAIL, "cannot open overlay '%s': %s", path, strerror(errno));
	if (fread(h, 1, sizeof(h), f) != sizeof(h) || memcmp(h, "QFI\xfb", 4)) {
		fclose(f);
		return host->error(VI_EFAIL, "overlay '%s' is not a qcow2 image", path);
	}
	off = be64(h + 8);
	size = (uint32_t)h[16] << 24 | h[17] << 16 | h[18] << 8 | h[19];
	if (!off || !size || size >= sizeof(name) || fseek(f, (long)off, SEEK_SET) ||
	    fread(name, 1, size, f) != size) {
		fclose(f);
		return host->error(VI_EFAIL, "overlay '%s' has no backing file", path);
	}
	fclose(f);
	name[size] = '\0';
	if (name[0] == '/') {
		snprintf(joined, sizeof(joined), "%s", name);
	} else {
		const char *slash = strrchr(path, '/');
		snprintf(joined, sizeof(joined), "%.*s%s", slash ? (int)(slash - path + 1) : 0, path,
			 name);
	}
	if (!realpath(joined, out))
		return host->error(VI_EFAIL, "backing file '%s' of overlay '%s' is missing", name,
				   path);
	return 0;
}

static int fixture_switch_disks(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
				const char *const *overlays)
{
	char record[4096], backing[PATH_MAX], current[PATH_MAX];
	int rc;
	FILE *f;

	if ((rc = need_state(ctx, vm, true)) < 0 || (rc = injected(vm, "switch_disks")) < 0)
		return rc;
	/* Every overlay is checked before any disk moves, as a real backend must. */
	for (size_t i = 0; i < vm->ndisks; i++) {
		if (!overlays[i])
			continue;
		if (vm->disks[i]->readonly)
			return host->error(VI_EUSAGE, "disk %zu of '%s' is read-only", i, vm->name);
		if ((rc = qcow2_backing(overlays[i], backing)) < 0)
			return rc;
		/* The same file, maybe by another name (a layer is a hard link). */
		struct stat a, b;
		if (!realpath(vm->disks[i]->path, current) || stat(current, &a) < 0 ||
		    stat(backing, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
			return host->error(VI_EUSAGE, "overlay '%s' is not backed by disk '%s'",
					   overlays[i], vm->disks[i]->path);
	}
	fixture_path(vm, "fixture-disks", record, sizeof(record));
	if (!(f = fopen(record, "a")))
		return host->error(VI_EFAIL, "cannot write '%s': %s", record, strerror(errno));
	for (size_t i = 0; i < vm->ndisks; i++)
		fprintf(f, "%s%s", i ? " " : "", overlays[i] ? overlays[i] : "-");
	fprintf(f, "\n");
	return fclose(f) ? host->error(VI_EFAIL, "cannot write '%s'", record) : 0;
}

static const struct vi_hv_ops ops = {
	.struct_size = sizeof(struct vi_hv_ops),
	.abi_version = VI_HV_ABI_VERSION,
	.name = "fixture",
	.description = "test fixture backend",
	.features = VI_HV_F_DIRECT_BOOT | VI_HV_F_FIRMWARE_BOOT | VI_HV_F_USER_NET,
	.probe = fixture_probe,
	.define = fixture_define,
	.start = fixture_start,
	.stop = fixture_stop,
	.pause = fixture_pause,
	.resume = fixture_resume,
	.state = fixture_state,
	.save = fixture_save,
	.restore = fixture_restore,
	.switch_disks = fixture_switch_disks,
	.forward_add = fixture_forward_add,
	.forward_remove = fixture_forward_remove,
	.nic_address = fixture_nic_address,
};

/* FIXTURE_NO_SAVE=1 plays a backend that cannot save or restore memory. */
static struct vi_hv_ops no_save;

VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *h)
{
	host = h;
	if (!getenv("FIXTURE_NO_SAVE"))
		return &ops;
	no_save = ops;
	no_save.save = NULL;
	no_save.restore = NULL;
	return &no_save;
}
