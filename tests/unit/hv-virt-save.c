/* hv-qemu's save and restore against the real libvirtd, through the plugin
 * ABI, driven as `vi snapshot` drives them: a guest whose init counts on
 * its console and writes each count to its disk is saved live (paused, its
 * disk moved onto an overlay, saved, resumed) and saved stopping it, then
 * restored, running or paused, onto new overlays on the frozen disks. The
 * count goes on from the saved instant, with no new boot, and lands on the
 * new overlay. Refusals and broken files leave the VM as it was. */
#include "tap.h"
#include "hv-virt-host.h"
#include "hv-virt-guest.h"

#include <stdlib.h>

/* One count every 100 ms, on the console and in the disk's first sector. */
#define COUNTER "i=0; while :; do i=$((i+1)); echo count $i; " \
		"echo count $i | dd of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null; " \
		"usleep 100000; done"
#define COUNT_TIMEOUT_S 30

static struct guest a;

/* The first and last "count N" in the console log (0 when there is none):
 * the log starts afresh whenever QEMU does, so after a restore the first is
 * the count the guest went on from. */
static void log_counts(const char *path, long *first, long *last)
{
	static char buf[1 << 20]; /* the log may hold NUL bytes: no string functions */
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	*first = *last = 0;
	if (fd >= 0)
		close(fd);
	if (n >= 0)
		buf[n] = '\0'; /* for strtol() at the end */
	for (char *p = buf; n > 0 && (p = memmem(p, (size_t)n - (size_t)(p - buf), "count ", 6));) {
		char *end;
		long c;

		p += 6;
		c = strtol(p, &end, 10);
		if (end > p && (*end == '\r' || *end == '\n')) {
			if (!*first)
				*first = c;
			*last = c;
		}
	}
}

static long last_count(void)
{
	long first, last;

	log_counts(a.log, &first, &last);
	return last;
}

/* Waits until the guest has counted past `count`; the last count seen. */
static long count_past(long count)
{
	double end = now() + COUNT_TIMEOUT_S;
	long c;

	while ((c = last_count()) <= count && now() < end)
		usleep(50000);
	return c;
}

/* The count the guest last wrote to the disk `path` (a qcow2 image), -1 when
 * it cannot be read. */
static long disk_count(const char *path)
{
	char raw[4400], buf[64] = "";
	long c = -1;
	int fd;

	snprintf(raw, sizeof(raw), "%s/sector.raw", work);
	if (run("qemu-img dd -U -f qcow2 -O raw bs=512 count=1 if='%s' of='%s'", path, raw))
		return -1;
	fd = open(raw, O_RDONLY);
	if (fd >= 0 && read(fd, buf, sizeof(buf) - 1) > 0 && !strncmp(buf, "count ", 6))
		c = strtol(buf + 6, NULL, 10);
	if (fd >= 0)
		close(fd);
	return c;
}

/* Gives a a new overlay on `backing` as its disk, in its directory. */
static void use_overlay(const char *backing, const char *name)
{
	snprintf(a.overlay, sizeof(a.overlay), "%s/%s.qcow2", a.run_dir, name);
	run("qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s'", backing, a.overlay);
	a.disk.path = a.overlay;
}

/* Where a state file goes: a's directory, as vi's store would have it. */
static char *state_path(const char *name)
{
	return xasprintf("%s/%s.state", a.run_dir, name);
}

/* What libvirt says of a after a restore: still the one persistent domain,
 * running on that disk and defined with it. */
static void check_domain(const char *disk_path)
{
	ok(!run("virsh -q dominfo %s | grep -q '^Persistent: *yes'", a.name),
	   "the domain is still persistent");
	ok(!run("virsh -q domuuid %s | grep -qix '%s'", a.name, a.uuid), "... with its UUID");
	ok(!run("virsh -q domblklist %s | grep -q ' %s$'", a.name, disk_path),
	   "the guest runs on the new overlay");
	ok(!run("virsh -q dumpxml --inactive %s | grep -q \"file='%s'\"", a.name, disk_path),
	   "... and is defined with it");
}

/* A state file as save() must leave it: root's alone, and one libvirt reads. */
static void check_state_file(const char *path)
{
	struct stat st;

	ok(stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600,
	   "the state file has mode 0600");
	ok(st.st_uid == geteuid(), "... and libvirtd's owner (ours)");
	ok(!run("virsh -q save-image-dumpxml '%s' | grep -qi '<uuid>%s</uuid>'", path, a.uuid),
	   "virsh save-image-dumpxml reads it: the domain's");
}

static bool one_line(const char *message)
{
	return *message && !strchr(message, '\n');
}

/* At exit, whatever happened: no domain and no files left behind. */
static void cleanup(void)
{
	if (ctx.priv) {
		if (a.vm.name)
			forget(&a);
		ops->close(&ctx);
	}
	if (*work)
		run("rm -rf '%s'", work);
}

/* Refusals: nothing written, and the VM as it was. */
static void test_save_stopped(void)
{
	char *path = state_path("stopped"), *want = xasprintf("'%s' is not running", a.name);

	is_int(ops->save(&ctx, &a.vm, path, 0), -VI_ESTATE, "save of a stopped VM: wrong state");
	is_str(host_error_text, want, "... says so");
	ok(!vi_file_exists(path), "... and writes nothing");
	free(path);
	free(want);
}

static void test_refusals(void)
{
	char *path = state_path("exists"), *nodir = xasprintf("%s/none/s.state", a.run_dir);
	char *want = xasprintf("'%s' is already running", a.name);

	is_int(ops->restore(&ctx, &a.vm, path, 0), -VI_ESTATE,
	       "restore of a running VM: wrong state");
	is_str(host_error_text, want, "... says so");
	free(want);

	run("echo keep >'%s'", path);
	is_int(ops->save(&ctx, &a.vm, path, VI_HV_SAVE_LIVE), -VI_ESTATE,
	       "save to a file that exists: refused");
	want = xasprintf("cannot save '%s' to '%s': the file exists", a.name, path);
	is_str(host_error_text, want, "... says so");
	ok(file_has(path, "keep"), "... and leaves the file alone");

	is_int(ops->save(&ctx, &a.vm, nodir, 0), -VI_EFAIL,
	       "save into a missing directory: failure");
	free(want);
	want = xasprintf("cannot save '%s' to '%s': ", a.name, nodir);
	ok(error_has(want) && one_line(host_error_text), "... in one line: %s", host_error_text);
	is_int(state_of(&a), VI_HV_RUNNING, "... and the guest runs on");
	long c = last_count();
	ok(count_past(c + 2) > c + 2, "... counting");
	free(path);
	free(nodir);
	free(want);
}

/* As `vi snapshot` of a running VM does it (lib/snapshot.c): pause, move the
 * disk onto an overlay, save (the host syncs the file), resume. The old image is then the frozen disk of the saved
 * instant; *count is the guest's count at that instant. */
static char *test_live_save(const char *path, long *count)
{
	char *frozen = xstrdup(a.disk.path);
	const char *overlays[] = { a.overlay };
	double t0 = now();

	use_overlay(frozen, "after-live");
	a.disk.path = frozen; /* until the guest moves */
	is_int(ops->pause(&ctx, &a.vm), 0, "live snapshot: pause");
	is_int(ops->switch_disks(&ctx, &a.vm, overlays), 0, "... move the disk onto an overlay");
	a.disk.path = a.overlay;
	is_int(ops->save(&ctx, &a.vm, path, VI_HV_SAVE_LIVE | VI_HV_SAVE_NOSYNC), 0,
	       "... save, live");
	is_int(state_of(&a), VI_HV_PAUSED, "... which leaves the paused guest paused");
	*count = last_count();
	is_int(ops->resume(&ctx, &a.vm), 0, "... resume");
	printf("# pause, switch, save, resume: %.0f ms\n", (now() - t0) * 1000);
	check_state_file(path);
	ok(count_past(*count + 2) > *count + 2, "the guest counts on");
	return frozen;
}

/* The guest paused by libvirt alone, for as long as the write takes. */
static void test_live_save_running(const char *path)
{
	double t0 = now();

	is_int(ops->save(&ctx, &a.vm, path, VI_HV_SAVE_LIVE), 0, "live save of the running guest");
	printf("# live save of the running guest: %.0f ms\n", (now() - t0) * 1000);
	run("virsh domjobinfo --completed %s | grep -E 'Time elapsed|Total downtime|Memory processed' "
	    "| sed 's/^/# /'", a.name);
	is_int(state_of(&a), VI_HV_RUNNING, "... which runs on");
	long c = last_count();
	ok(count_past(c + 2) > c + 2, "... counting");
	unlink(path);
}

/* The saved instant is the last count on the console once the VM is stopped. */
static long test_save_stopping(const char *path)
{
	double t0 = now();

	is_int(ops->save(&ctx, &a.vm, path, 0), 0, "save, stopping the guest");
	printf("# save, stopping the guest: %.0f ms\n", (now() - t0) * 1000);
	is_int(state_of(&a), VI_HV_STOPPED, "the guest is stopped, and still defined");
	check_state_file(path);
	return last_count();
}

/* Restores `path` onto a new overlay on `frozen`, and checks the guest goes on
 * from `count` on it while `frozen` stays as it was. */
static void restore_onto(const char *path, const char *frozen, long count, unsigned flags,
			 const char *what)
{
	char *sum = xasprintf("%s/frozen.sum", work);
	long first, last;
	double t0 = now();

	run("sha256sum '%s' >'%s'", frozen, sum);
	use_overlay(frozen, what);
	int rc = ops->restore(&ctx, &a.vm, path, flags);
	is_int(rc, 0, "%s: restored onto a new overlay%s%s", what, rc ? ": " : "",
	       rc ? host_error_text : "");
	printf("# restore: %.0f ms\n", (now() - t0) * 1000);
	if (flags & VI_HV_RUN_PAUSED) {
		is_int(state_of(&a), VI_HV_PAUSED, "%s: paused", what);
		usleep(1000000);
		log_counts(a.log, &first, &last);
		is_int(last, 0, "%s: counting nothing", what);
		is_int(ops->resume(&ctx, &a.vm), 0, "%s: resumed", what);
	}
	is_int(state_of(&a), VI_HV_RUNNING, "%s: running", what);
	count_past(count + 3);
	log_counts(a.log, &first, &last);
	is_int(first, count + 1, "%s: the guest goes on from its saved count", what);
	ok(last > count + 3, "%s: ... and counts on, to %ld", what, last);
	ok(!file_has(a.log, MARKER), "%s: ... with no new boot", what);
	check_domain(a.overlay);
	ok(disk_count(a.overlay) > count, "%s: its writes land on the new overlay", what);
	ok(!run("sha256sum -c --status '%s'", sum), "%s: the frozen disk stays as it was", what);
	free(sum);
}

/* A guest saved under an older QEMU: its machine type is not the one "q35"
 * names now (pc-q35-7.1 stands for it, booted through virsh), and the restore
 * keeps the saved one, which libvirt and QEMU require. */
static void test_older_machine(void)
{
	char *path = state_path("older"), *xml = xasprintf("%s/older.xml", work);
	char *frozen = xstrdup(a.disk.path);
	long count;

	ops->stop(&ctx, &a.vm, VI_HV_STOP_FORCE, 0);
	ok(!run("virsh -q dumpxml --inactive %s | sed \"s/machine='[^']*'/machine='pc-q35-7.1'/\" "
		">'%s' && virsh -q define '%s' >/dev/null && virsh -q start %s >/dev/null",
		a.name, xml, xml, a.name) &&
		   wait_for_text(a.log, MARKER, BOOT_TIMEOUT_S) && count_past(2) > 2,
	   "older: the guest boots as pc-q35-7.1 and counts");
	is_int(ops->save(&ctx, &a.vm, path, 0), 0, "older: saved, stopping it");
	count = last_count();
	restore_onto(path, frozen, count, 0, "older");
	ok(!run("virsh -q dumpxml %s | grep -q \"machine='pc-q35-7.1'\"", a.name),
	   "older: the restored guest is still a pc-q35-7.1");
	free(path);
	free(xml);
	free(frozen);
}

/* Files that are not a whole state: one line each, the VM stopped. */
static void test_broken(const char *good)
{
	char *junk = state_path("junk"), *cut = state_path("cut"), *want;

	run("head -c 100000 /dev/urandom >'%s'; chmod 0600 '%s'", junk, junk);
	run("head -c 1000000 '%s' >'%s'; chmod 0600 '%s'", good, cut, cut);
	ops->stop(&ctx, &a.vm, VI_HV_STOP_FORCE, 0);

	want = xasprintf("cannot find state file '%s/none.state' of '%s': No such file or "
			 "directory", a.run_dir, a.name);
	char *none = state_path("none");
	is_int(ops->restore(&ctx, &a.vm, none, 0), -VI_ENOTFOUND,
	       "restore of a missing file: not found");
	is_str(host_error_text, want, "... says so");
	free(none);
	free(want);

	is_int(ops->restore(&ctx, &a.vm, junk, 0), -VI_EFAIL, "restore of a corrupt file: failure");
	want = xasprintf("cannot restore '%s' from '%s': ", a.name, junk);
	ok(error_has(want) && one_line(host_error_text), "... in one line: %s", host_error_text);
	is_int(state_of(&a), VI_HV_STOPPED, "... leaving the VM defined and stopped");
	free(want);

	is_int(ops->restore(&ctx, &a.vm, cut, 0), -VI_EFAIL,
	       "restore of a truncated file: failure");
	want = xasprintf("cannot restore '%s' from '%s': ", a.name, cut);
	ok(error_has(want) && one_line(host_error_text), "... in one line: %s", host_error_text);
	is_int(state_of(&a), VI_HV_STOPPED, "... leaving the VM defined and stopped");
	free(want);

	uint64_t max = a.vm.max_memory;
	a.vm.max_memory = 512 * MiB;
	is_int(ops->restore(&ctx, &a.vm, good, 0), -VI_EUNSUPPORTED,
	       "restore as another machine (more memory): unsupported");
	ok(error_has("match source") && one_line(host_error_text), "... libvirt says: %s",
	   host_error_text);
	is_int(state_of(&a), VI_HV_STOPPED, "... leaving the VM defined and stopped");
	a.vm.max_memory = max;
	free(junk);
	free(cut);
}

int main(void)
{
	static struct vi_hv_forward web = { sizeof(web), VI_HV_TCP, "127.0.0.1", 0, 80 };
	static const struct vi_hv_forward *forwards[] = { &web };
	const char *reason = NULL;
	long live_count, count;
	int probe;

	ops = load_plugin("qemu");
	if (!ok(ops != NULL, "hv-qemu loads"))
		return done();
	if (!ok(ops->save && ops->restore, "hv-qemu saves and restores"))
		return done();
	atexit(cleanup);
	snprintf(work, sizeof(work), "/var/tmp/vi-test-XXXXXX");
	if (!mkdtemp(work) || chmod(work, 0711) || prepare_artifacts("--run '" COUNTER "'")) {
		ok(0, "test kernel, initramfs and disk prepared");
		return done();
	}
	ctx_open(ops, &ctx, NULL);
	probe = ops->probe(&ctx, &reason);
	if (probe != VI_HV_PROBE_OK) {
		skip("libvirtd is not reachable (scripts/setup starts it): %s",
		     reason ? reason : host_error_text);
		return done();
	}

	/* No balloon driver: the guest keeps all of its 384 MiB while the VM says
	 * 256, so the memory a save records is never the VM's. */
	guest_init(&a, "a", "console=ttyS0 quiet module_blacklist=virtio_balloon");
	web.host_port = free_port();
	a.nic.forwards = forwards;
	a.nic.nforwards = 1;
	is_int(ops->define(&ctx, &a.vm), 0, "define a");
	test_save_stopped();
	is_int(ops->start(&ctx, &a.vm), 0, "start a");
	if (!ok(wait_for_text(a.log, MARKER, BOOT_TIMEOUT_S) && count_past(2) > 2,
		"a boots and counts"))
		return done();
	test_refusals();

	char *live = state_path("live"), *running = state_path("running");
	char *stopping = state_path("stopping");
	char *live_frozen = test_live_save(live, &live_count);
	test_live_save_running(running);
	char *frozen = xstrdup(a.disk.path);
	count = test_save_stopping(stopping);
	ok(disk_count(frozen) >= count - 1, "the disk holds the count of the saved instant");

	restore_onto(stopping, frozen, count, 0, "restore");
	ok(reaches_guest(web.host_port), "restore: its port forward is set up again");
	ops->stop(&ctx, &a.vm, VI_HV_STOP_FORCE, 0);
	restore_onto(stopping, frozen, count, VI_HV_RUN_PAUSED, "paused");
	ops->stop(&ctx, &a.vm, VI_HV_STOP_FORCE, 0);
	is_int(ops->undefine(&ctx, &a.vm), 0, "libvirt loses the VM");
	restore_onto(live, live_frozen, live_count, 0, "live");
	test_older_machine();
	test_broken(stopping);

	free(live);
	free(running);
	free(stopping);
	free(live_frozen);
	free(frozen);
	return done();
}
