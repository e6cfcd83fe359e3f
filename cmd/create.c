/* vi create NAME: define a new VM (direct kernel boot, or disks the user
 * brings) on the chosen backend; with --start, boot it too. The VM is built
 * in a staging directory and renamed into the store only once the backend has
 * accepted it, so a failure leaves nothing behind. */
#include "cmd.h"
#include "error.h"
#include "forward.h"
#include "log.h"
#include "machine.h"
#include "ops.h"
#include "output.h"
#include "progress.h"
#include "ssh.h"
#include "template.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *kernel, *initrd, *cmdline, *guest_type, *template_ref;
static uint64_t cpus, max_cpus, memory, max_memory, disk_size, timeout;
static const char *user, *user_data;
static struct vi_strlist disks, nics, sets, forwards, ssh_keys, labels;
static int start, wait_ready, rm;

const struct vi_option create_options[] = {
	{ "template", 't', VI_OPT_STRING, &template_ref, "TEMPLATE",
	  "provision from this template's golden image (built if missing)", VI_COMPLETE_TEMPLATE },
	{ "set", 0, VI_OPT_LIST, &sets, "KEY=VALUE", "a template parameter (repeatable)" },
	{ "disk-size", 0, VI_OPT_SIZE, &disk_size, "SIZE", "grow the template's first disk to SIZE" },
	{ "kernel", 0, VI_OPT_STRING, &kernel, "FILE", "boot this kernel directly", VI_COMPLETE_FILE },
	{ "initrd", 0, VI_OPT_STRING, &initrd, "FILE", "initial ramdisk for --kernel",
	  VI_COMPLETE_FILE },
	{ "cmdline", 0, VI_OPT_STRING, &cmdline, "STRING", "kernel command line" },
	{ "cpus", 0, VI_OPT_UINT, &cpus, "N", "virtual CPUs (default 1)", .min = 1, .max = 4096 },
	{ "max-cpus", 0, VI_OPT_UINT, &max_cpus, "N", "vCPUs it may grow to (default --cpus)",
	  .min = 1, .max = 4096 },
	{ "memory", 0, VI_OPT_SIZE, &memory, "SIZE", "memory (default 512M)" },
	{ "max-memory", 0, VI_OPT_SIZE, &max_memory, "SIZE",
	  "memory it may grow to (default --memory)" },
	{ "disk", 0, VI_OPT_LIST, &disks, "FILE[,ro][,format=F]", "attach a disk image (repeatable)",
	  VI_COMPLETE_FILE },
	{ "nic", 0, VI_OPT_LIST, &nics, "MODE[:SOURCE]",
	  "a network interface: user (the default), nat[:NET], bridge:BR, tap[:DEV], network:NET, "
	  "none" },
	{ "forward", 'p', VI_OPT_LIST, &forwards, "[ADDR:]HOST:GUEST[/udp]",
	  "forward a host port to the guest (repeatable; HOST 0: a free one)" },
	{ "user", 'u', VI_OPT_STRING, &user, "NAME", "the login user, made at first boot" },
	{ "ssh-key", 0, VI_OPT_LIST, &ssh_keys, "FILE",
	  "public keys that may log in, besides the store's (repeatable)", VI_COMPLETE_FILE },
	{ "user-data", 0, VI_OPT_STRING, &user_data, "FILE",
	  "cloud-init user-data for the first boot", VI_COMPLETE_FILE },
	{ "label", 0, VI_OPT_LIST, &labels, "KEY=VALUE",
	  "a label (repeatable; a key given twice keeps the last)" },
	{ "guest-type", 0, VI_OPT_STRING, &guest_type, "TYPE", "backend flavour (xen: pv, pvh, hvm)" },
	OPT_HV,
	OPT_CONNECT,
	{ "start", 0, VI_OPT_FLAG, &start, NULL, "start it once created" },
	{ "wait-ready", 'w', VI_OPT_FLAG, &wait_ready, NULL,
	  "start it and wait for its readiness probe" },
	{ "timeout", 0, VI_OPT_UINT, &timeout, "SECONDS",
	  "how long --wait-ready waits (default: the template's, else 300)", .min = 1,
	  .max = 86400 },
	{ "rm", 0, VI_OPT_FLAG, &rm, NULL,
	  "destroy it when interrupted, or once the command after -- has run" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

static void report(const struct vi_vm *vm, bool started, double ms)
{
	char mem[32];

	if (ctx.json) {
		struct json_object *doc = vi_json_doc(), *o = json_object_new_object();
		json_object_object_add(o, "name", vi_json_str(vm->name));
		json_object_object_add(o, "uuid", vi_json_str(vm->uuid));
		json_object_object_add(o, "hv", vi_json_str(vm->hv));
		json_object_object_add(o, "template", vi_json_str(vm->template));
		json_object_object_add(o, "state", vi_json_str(started ? "running" : "stopped"));
		json_object_object_add(o, "user", vi_json_str(vm->user));
		struct vi_vm_forward *sf = vi_vm_ssh_forward(vm);
		if (sf) {
			char *ssh = xasprintf("%s:%u", sf->host_addr, sf->host_port);
			json_object_object_add(o, "ssh", vi_json_str(ssh));
			free(ssh);
		}
		json_object_object_add(doc, "vm", o);
		json_object_object_add(doc, "milliseconds", vi_json_ms(ms));
		vi_json_print(doc);
		return;
	}
	vi_format_size(vm->memory, mem, sizeof(mem));
	vi_info("created VM '%s' on %s: %u vCPU%s, %s%s%s%s%s", vm->name, vm->hv, vm->cpus,
		vm->cpus == 1 ? "" : "s", mem, vm->template ? ", from template '" : "",
		vm->template ? vm->template : "", vm->template ? "'" : "", started ? ", running" : "");
}

static volatile sig_atomic_t interrupted;
static volatile pid_t command_pid;

/* With --rm, SIGINT and SIGTERM are remembered, so that the machine is
 * destroyed before vi exits, and passed on to the command: a signal sent to
 * vi alone (by kill or a CI runner's timeout) must end the command too. One
 * typed at the terminal reached the command already. */
static void on_signal(int sig, siginfo_t *info, void *uctx)
{
	(void)uctx;
	interrupted = sig;
	if (command_pid > 0 && info->si_code != SI_KERNEL)
		kill(command_pid, sig);
}

static void catch_signals(void)
{
	struct sigaction sa = { .sa_sigaction = on_signal, .sa_flags = SA_SIGINFO };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static int interrupted_error(void)
{
	return vi_error(VI_EFAIL, "interrupted by SIG%s", sigabbrev_np(interrupted));
}

static bool console_ready(const struct vi_machine *m)
{
	char *log = NULL;
	size_t len;
	bool ready = !m->def.ready_marker || (vi_read_file(m->view.console_log, &log, &len) == 0 &&
					      strstr(log, m->def.ready_marker));
	free(log);
	vi_error_clear();
	return ready;
}

static bool ssh_ready(struct vi_machine *m)
{
	struct vi_ssh_target t;
	bool ready;

	if (!m->def.ready_ssh)
		return true;
	if (vi_ssh_target(&ctx.store, m, &t) < 0) {
		vi_error_clear();
		return false;
	}
	ready = vi_ssh_answers(&t);
	vi_ssh_target_release(&t);
	return ready;
}

/* Polls the console log for the readiness marker, then SSH where ready
 * means it answers. */
static int wait_for_ready(struct vi_machine *m, unsigned seconds)
{
	const struct vi_vm *vm = &m->def;
	double t0;

	if (!vm->ready_marker && !vm->ready_ssh)
		return vi_error(VI_EUSAGE, "VM '%s' has no readiness probe to wait for", vm->name);
	t0 = vi_now_ms();
	for (;;) {
		bool console = console_ready(m);
		if (console && ssh_ready(m))
			return 0;
		if (interrupted)
			return interrupted_error();
		if (vi_ms_since(t0) >= seconds * 1000.0) {
			if (!console)
				return vi_error(VI_ETIMEOUT,
						"VM '%s' was not ready within %u s (no '%s' on its console)",
						vm->name, seconds, vm->ready_marker);
			return vi_error(VI_ETIMEOUT,
					"VM '%s' was not ready within %u s (its SSH server did not "
					"let vi in)",
					vm->name, seconds);
		}
		struct vi_hv_state st;
		if (vi_hv_state(m->hv, &m->view.vm, &st) == 0 && st.state != VI_HV_RUNNING &&
		    st.state != VI_HV_PAUSED)
			return vi_error(VI_EFAIL, "VM '%s' stopped before it was ready", vm->name);
		struct timespec ts = { 0, (console && vm->ready_ssh ? 500 : 100) * 1000000 };
		nanosleep(&ts, NULL);
	}
}

/* What the command after -- gets to reach the machine by: VI_VM always, and
 * where it has an SSH login, its address and the ssh command line. */
static void command_env(struct vi_machine *m)
{
	struct vi_ssh_target t;

	setenv("VI_VM", m->def.name, 1);
	if (vi_ssh_target(&ctx.store, m, &t) < 0) {
		vi_debug("no SSH for the command: %s", vi_error_message());
		vi_error_clear();
		return;
	}
	char port[16], *line = vi_ssh_cmdline(&t);
	snprintf(port, sizeof(port), "%u", t.port);
	setenv("VI_IP", t.addr, 1);
	if (t.guest_addr)
		setenv("VI_GUEST_IP", t.guest_addr, 1);
	setenv("VI_SSH_PORT", port, 1);
	setenv("VI_SSH_KEY", t.key, 1);
	setenv("VI_SSH_USER", t.user, 1);
	setenv("VI_SSH", line, 1);
	free(line);
	vi_ssh_target_release(&t);
}

/* Runs argv; returns its exit status. */
static int run_command(char **argv, int *status)
{
	pid_t pid;
	int st;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot fork");
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], argv);
		fprintf(stderr, "vi: error: cannot run '%s': %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	command_pid = pid;
	if (interrupted) /* before command_pid was set: not passed on yet */
		kill(pid, interrupted);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return vi_error_errno(VI_EFAIL, errno, "cannot wait for '%s'", argv[0]);
	command_pid = 0;
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return 0;
}

int cmd_create(int argc, char **argv)
{
	const char *name = argv[0];
	struct vi_machine m = { 0 };
	struct vi_progress progress;
	struct template_build_opts bo = { .progress = vi_progress_report, .opaque = &progress };
	struct vi_create_spec spec = {
		.name = name,
		.hv = ctx.hv,
		.connect = ctx.connect,
		.template_ref = template_ref,
		.sets = (const char *const *)sets.items,
		.nsets = sets.n,
		.build = &bo,
		.disk_size = disk_size,
		.kernel = kernel,
		.initrd = initrd,
		.cmdline = cmdline,
		.guest_type = guest_type,
		.cpus = (unsigned)cpus,
		.max_cpus = (unsigned)max_cpus,
		.memory = memory,
		.max_memory = max_memory,
		.disks = (const char *const *)disks.items,
		.ndisks = disks.n,
		.nics = (const char *const *)nics.items,
		.nnics = nics.n,
		.forwards = (const char *const *)forwards.items,
		.nforwards = forwards.n,
		.user = user,
		.ssh_keys = (const char *const *)ssh_keys.items,
		.nssh_keys = ssh_keys.n,
		.user_data = user_data,
		.labels = (const char *const *)labels.items,
		.nlabels = labels.n,
		.start = start || wait_ready,
	};
	char **command = argc > 1 ? argv + 1 : NULL;
	unsigned ready_timeout;
	double t0;
	int rc, status = 0;

	t0 = vi_now_ms();
	if (argc > 1 && vi_opt_dashdash != 1)
		return vi_error(VI_EUSAGE, "unexpected argument '%s' (a command goes after --)", argv[1]);
	if (command && !spec.start)
		return vi_error(VI_EUSAGE, "a command after -- needs --start or --wait-ready");
	/* From before the machine exists: a signal during its creation must not
	 * leave it behind either. */
	if (rm)
		catch_signals();
	if (template_ref)
		vi_progress_start(&progress, 0, "building");
	rc = vi_op_create(&ctx.store, &ctx.plugins, &spec, &m, &ready_timeout);
	if (template_ref)
		vi_progress_end(&progress);
	if (rc < 0)
		goto cleanup;
	if (interrupted) {
		rc = interrupted_error();
		goto cleanup;
	}
	/* Waiting and the command may take long: let other commands at the VM. */
	vi_store_unlock(ctx.lock);
	ctx.lock = -1;
	if (wait_ready &&
	    (rc = wait_for_ready(&m, timeout ? timeout : ready_timeout ? ready_timeout : 300)) < 0)
		goto cleanup;
	report(&m.def, spec.start, vi_ms_since(t0));
	if (command) {
		command_env(&m);
		if ((rc = run_command(command, &status)) < 0)
			goto cleanup;
		ctx.exit_status = status;
	}
	if (interrupted)
		rc = interrupted_error();
cleanup:
	/* --rm: the machine goes, whatever happened. */
	if (m.dir && rm && (rc < 0 || command || interrupted)) {
		struct vi_error_saved e;
		vi_error_save(&e);
		vi_op_destroy(&ctx.store, &m, VI_OP_FORCE);
		vi_error_restore(&e);
	}
	vi_machine_release(&m);
	vi_strlist_release(&disks);
	vi_strlist_release(&nics);
	vi_strlist_release(&sets);
	vi_strlist_release(&forwards);
	vi_strlist_release(&ssh_keys);
	vi_strlist_release(&labels);
	return rc;
}
