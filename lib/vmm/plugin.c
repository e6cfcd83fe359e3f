/* The native backends' plugin methods: probe, define, start (a detached re-exec of vi),
 * run (the VM process: pid file, control socket, console log), and the methods that
 * reach a running VM through its control socket. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "util.h"
#include "plugin/host.h"
#include "vmm/control.h"
#include "vmm/plugin.h"

#define START_TIMEOUT_MS 60000
#define FORCE_TIMEOUT_MS 10000

static const struct vi_host *host;
static const struct vmm_backend *backend;
static struct vi_hv_ops ops;
static char probe_reason[256];

/* A file in the VM's run directory (the caller frees the path). */
static char *run_path(const struct vi_hv_vm *vm, const char *file)
{
	return xasprintf("%s/%s", vm->run_dir, file);
}

static int plugin_probe(struct vi_hv_ctx *ctx, const char **reason)
{
	struct vmm_kvm_info info;
	char vendor[13];

	(void)ctx;
	*reason = probe_reason;
	vmm_cpu_vendor(vendor);
	if (strcmp(vendor, backend->cpu_vendor)) {
		snprintf(probe_reason, sizeof(probe_reason), "this CPU is %s: hv-%s needs %s",
			 vendor, backend->name, backend->technology);
		return VI_HV_PROBE_DECLINED;
	}
	if (vmm_kvm_probe(&info) < 0) {
		snprintf(probe_reason, sizeof(probe_reason), "%s", vi_error_message());
		return VI_HV_PROBE_DECLINED;
	}
	if (!info.hardware) {
		/* Usable when asked for by name; too slow to be anybody's default. */
		snprintf(probe_reason, sizeof(probe_reason),
			 "software KVM: guest code is emulated (%s), up to %u vCPUs", info.module,
			 info.max_vcpus);
		return VI_HV_PROBE_EXPLICIT;
	} else if (strcmp(info.module, backend->kvm_module)) {
		snprintf(probe_reason, sizeof(probe_reason), "'/dev/kvm' is %s, not %s",
			 info.module, backend->kvm_module);
		return VI_HV_PROBE_DECLINED;
	} else
		snprintf(probe_reason, sizeof(probe_reason), "%s through %s, up to %u vCPUs",
			 backend->technology, info.module, info.max_vcpus);
	return VI_HV_PROBE_OK;
}

/* A VM's configuration for lib/vmm; its disk and NIC arrays are the caller's to free
 * with plugin_config_release(). */
static void plugin_config_release(struct vmm_config *cfg)
{
	for (size_t i = 0; cfg->nics && i < cfg->nnics; i++) {
		free((struct vmm_forward *)cfg->nics[i].forwards);
		free((char *)cfg->nics[i].bridge);
		free((char *)cfg->nics[i].network);
	}
	free((struct vmm_disk *)cfg->disks);
	free((struct vmm_nic *)cfg->nics);
	cfg->disks = NULL;
	cfg->nics = NULL;
}

static struct vmm_forward plugin_forward(const struct vi_hv_forward *f)
{
	return (struct vmm_forward){ f->proto == VI_HV_UDP, f->host_addr, f->host_port,
				     f->guest_port };
}

/* The libvirt network of a "nat" NIC. */
static const char *nat_network(const struct vi_hv_nic *n)
{
	return n->source ? n->source : "default";
}

/* The bridge of a libvirt network, as its live status (libvirtd's) names it; virbr0 when
 * nothing does. The caller frees it. */
static char *nat_bridge(const char *network)
{
	char *path = xasprintf("/run/libvirt/network/%s.xml", network), *xml = NULL, *bridge = NULL;
	const char *p;

	if (vi_read_file(path, &xml, NULL) == 0 && (p = strstr(xml, "<bridge name="))) {
		char quote = p[13];
		const char *end = quote == '\'' || quote == '"' ? strchr(p + 14, quote) : NULL;

		if (end && end > p + 14)
			bridge = xasprintf("%.*s", (int)(end - p - 14), p + 14);
	}
	free(xml);
	free(path);
	return bridge ? bridge : xstrdup("virbr0");
}

/* The bridge of a NIC on one: libvirt's network for "nat", and for "network" vi's own
 * private network of that name when the store has one (*network_dir set), else libvirt's. */
static char *nic_bridge(const struct vi_hv_nic *n, char **network_dir)
{
	char *bridge;

	*network_dir = NULL;
	if (!strcmp(n->mode, "bridge"))
		return xstrdup(n->source);
	if (!strcmp(n->mode, "network") &&
	    vmm_net_find(host->home, n->source, &bridge, network_dir) == 0)
		return bridge;
	if (!strcmp(n->mode, "nat") || !strcmp(n->mode, "network"))
		return nat_bridge(nat_network(n));
	return NULL;
}

/* Before the VMM starts, the bridge of every NIC on one must be there: vi's own network's
 * made again if the host lost it, libvirt's started. */
static int bridges_check(const struct vi_hv_vm *vm, const struct vmm_config *cfg)
{
	for (size_t i = 0; i < cfg->nnics; i++) {
		char *sys;
		bool there;

		if (!cfg->nics[i].bridge)
			continue;
		if (cfg->nics[i].network) {
			if (vmm_net_start(cfg->nics[i].network) < 0)
				return vi_error_wrap("network card %zu: network '%s'", i,
						     vm->nics[i]->source);
			continue;
		}
		sys = xasprintf("/sys/class/net/%s/bridge", cfg->nics[i].bridge);
		there = access(sys, F_OK) == 0;
		free(sys);
		if (there)
			continue;
		if (!strcmp(vm->nics[i]->mode, "bridge"))
			return vi_error(VI_ESTATE, "network card %zu: there is no bridge '%s'", i,
					cfg->nics[i].bridge);
		return vi_error(VI_ESTATE,
				"network card %zu: libvirt network '%s' is not started: "
				"there is no bridge '%s'",
				i, nat_network(vm->nics[i]), cfg->nics[i].bridge);
	}
	return 0;
}

static int plugin_nic(const struct vi_hv_nic *n, struct vmm_nic *out)
{
	struct vmm_forward *forwards;
	unsigned mac[6];

	if (strcmp(n->mode, "tap") && strcmp(n->mode, "user") && strcmp(n->mode, "nat") &&
	    strcmp(n->mode, "bridge") && strcmp(n->mode, "network"))
		return vi_error(VI_EUNSUPPORTED,
				"hv-%s attaches network cards to user-mode networking, NAT, "
				"networks, bridges or TAP devices only, not '%s'",
				backend->name, n->mode);
	if (!n->mac || sscanf(n->mac, "%2x:%2x:%2x:%2x:%2x:%2x", &mac[0], &mac[1], &mac[2],
			      &mac[3], &mac[4], &mac[5]) != 6)
		return vi_error(VI_EUSAGE, "invalid MAC address '%s'", n->mac ? n->mac : "");
	for (unsigned i = 0; i < 6; i++)
		out->mac[i] = (uint8_t)mac[i];
	out->user = !strcmp(n->mode, "user");
	out->tap = !strcmp(n->mode, "tap") ? n->source : NULL;
	out->bridge = nic_bridge(n, (char **)&out->network);
	forwards = xcalloc(n->nforwards + 1, sizeof(*forwards));
	for (size_t i = 0; out->user && i < n->nforwards; i++)
		forwards[out->nforwards++] = plugin_forward(n->forwards[i]);
	out->forwards = forwards;
	return 0;
}

static int plugin_config(const struct vi_hv_vm *vm, struct vmm_config *cfg)
{
	struct vmm_disk *disks;
	struct vmm_nic *nics;

	if (!vm->kernel)
		return vi_error(VI_EUNSUPPORTED, "hv-%s boots a kernel directly: VM '%s' has none",
				backend->name, vm->name);
	disks = xcalloc(vm->ndisks + 1, sizeof(*disks));
	nics = xcalloc(vm->nnics + 1, sizeof(*nics));
	*cfg = (struct vmm_config){
		.kernel = vm->kernel, .initrd = vm->initrd, .cmdline = vm->cmdline,
		.uuid = vm->uuid, .cpus = vm->cpus, .max_cpus = vm->max_cpus,
		.memory = vm->memory, .max_memory = vm->max_memory, .vendor = backend->vendor,
		.console_fd = -1, .disks = disks, .ndisks = vm->ndisks, .nics = nics,
		.nnics = vm->nnics, .rng = true, .balloon = true,
	};
	for (size_t i = 0; i < vm->ndisks; i++)
		disks[i] = (struct vmm_disk){ vm->disks[i]->path, vm->disks[i]->format,
					      vm->disks[i]->readonly != 0 };
	for (size_t i = 0; i < vm->nnics; i++) {
		int ret = plugin_nic(vm->nics[i], &nics[i]);

		if (ret < 0) {
			plugin_config_release(cfg);
			return ret;
		}
	}
	return 0;
}

static int plugin_define(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	struct vmm_config cfg;
	int ret = plugin_config(vm, &cfg);

	(void)ctx;
	if (ret == 0) {
		ret = vmm_check_config(&cfg);
		plugin_config_release(&cfg);
	}
	return ret;
}

/* Connects to a running VM's socket; -VI_ESTATE when it is not running. */
static int plugin_connect(const struct vi_hv_vm *vm, int *fd)
{
	char *path = run_path(vm, "control.sock");
	int ret = vmm_control_connect(path, fd);

	free(path);
	if (ret == -VI_ESTATE)
		return vi_error(VI_ESTATE, "VM '%s' is not running", vm->name);
	return ret;
}

/* One request on a fresh connection; *reply may be NULL when not wanted. */
static int plugin_call(const struct vi_hv_vm *vm, const char *cmd, struct json_object *args,
		       struct json_object **reply)
{
	int fd, ret = plugin_connect(vm, &fd);

	if (ret < 0) {
		json_object_put(args);
		return ret;
	}
	ret = vmm_control_call(fd, cmd, args, reply);
	close(fd);
	return ret;
}

static int64_t json_int(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static int plugin_state(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
			struct vi_hv_state *out)
{
	char *pid_path = run_path(vm, "pid"), *text = NULL, *sock = run_path(vm, "control.sock");
	struct json_object *reply = NULL, *v;
	pid_t pid;
	int fd;

	(void)ctx;
	out->state = VI_HV_STOPPED;
	out->pid = 0;
	out->started_at = 0;
	if (vi_read_file(pid_path, &text, NULL) < 0)
		goto out;
	pid = (pid_t)atoi(text);
	if (vmm_control_connect(sock, &fd) == 0) {
		if (vmm_control_call(fd, "status", NULL, &reply) == 0) {
			out->pid = (pid_t)json_int(reply, "pid");
			out->started_at = json_int(reply, "started_at");
			out->state = json_object_object_get_ex(reply, "state", &v) &&
						     !strcmp(json_object_get_string(v), "paused")
					     ? VI_HV_PAUSED
					     : VI_HV_RUNNING;
			json_object_put(reply);
		}
		close(fd);
	} else if (pid > 0 && kill(pid, 0) == 0) {
		/* The VMM removes its socket last: alive without one, it is on its way out. */
		out->state = VI_HV_SHUTTING_DOWN;
		out->pid = pid;
	} else {
		/* A pid file its process did not live to remove. */
		out->state = VI_HV_CRASHED;
	}
out:
	free(text);
	free(pid_path);
	free(sock);
	return 0;
}

static bool plugin_running(const struct vi_hv_vm *vm)
{
	struct vi_hv_state st;

	plugin_state(NULL, vm, &st);
	return vi_hv_state_active(st.state);
}

/* In the grandchild between fork and exec: async-signal-safe calls only. */
static void start_exec(char *const argv[], int notify, int incoming)
{
	static const char msg[] = "01 cannot execute the VMM";
	int null = open("/dev/null", O_RDWR);

	/* The stream above every fd it could be moved over, then onto fd 4. */
	if (incoming >= 0 && (incoming = fcntl(incoming, F_DUPFD, 5)) < 0)
		_exit(127);
	if (null < 0 || dup2(notify, 3) < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 ||
	    dup2(null, 2) < 0 || (incoming >= 0 && dup2(incoming, 4) < 0))
		_exit(127);
	close_range(incoming >= 0 ? 5 : 4, ~0u, 0);
	execv(argv[0], argv);
	if (write(3, msg, sizeof(msg) - 1) < 0)
		_exit(127);
	_exit(127);
}

/* Reads the notify pipe to EOF: "1", or "0", the VI_E* code, a space and a message. */
/* timeout_ms 0: as long as the VMM lives (a migration takes what it takes; the
 * VMM gives up on a silent stream itself). */
static int start_wait(const struct vi_hv_vm *vm, int fd, long timeout_ms)
{
	char buf[1024];
	size_t len = 0;
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long waited;
		ssize_t n;

		clock_gettime(CLOCK_MONOTONIC, &now);
		waited = (now.tv_sec - start.tv_sec) * 1000 +
			 (now.tv_nsec - start.tv_nsec) / 1000000;
		if (timeout_ms && waited >= timeout_ms)
			return vi_error(VI_ETIMEOUT, "VM '%s' did not start within %ld s", vm->name,
					timeout_ms / 1000);
		if (poll(&p, 1, timeout_ms ? (int)(timeout_ms - waited) : -1) < 0 && errno != EINTR)
			return vi_error_errno(VI_EFAIL, errno, "cannot wait for VM '%s'", vm->name);
		if (!p.revents)
			continue;
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || len + (size_t)n == sizeof(buf) - 1) {
			len += n > 0 ? (size_t)n : 0;
			break;
		}
		len += (size_t)n;
	}
	buf[len] = '\0';
	if (len && buf[0] == '1')
		return 0;
	if (len > 1 && buf[0] == '0') {
		char *msg;
		long code = strtol(buf + 1, &msg, 10);

		if (*msg == ' ')
			msg++;
		/* The VMM's own refusal, as it would have said it here. */
		return vi_error(code > 0 && code < 128 ? (int)code : VI_EFAIL, "%s", msg);
	}
	return vi_error(VI_EFAIL, "the VMM of '%s' ended before the guest started", vm->name);
}

/* Starts the VM's process, booting it or, with `state`, restoring that state (paused
 * when asked), or with `incoming` >= 0 receiving it from that stream (which the VMM gets
 * as fd 4), and waits until its guest runs. */
static int start_vmm(const struct vi_hv_vm *vm, const char *state, unsigned flags, int incoming)
{
	char *argv[12] = { (char *)host->self_exe, "--home", (char *)host->home, "__vmm-run",
			   "--hv", (char *)backend->name };
	size_t argc = 6;
	int pipefd[2], ret, status;
	pid_t child;

	if (state) {
		argv[argc++] = "--restore";
		argv[argc++] = (char *)state;
	}
	if (flags & VI_HV_RUN_PAUSED)
		argv[argc++] = "--paused";
	if (flags & VI_HV_RUN_UNCHECKED)
		argv[argc++] = "--unchecked";
	if (incoming >= 0) {
		argv[argc++] = "--incoming";
		argv[argc++] = "4";
	}
	argv[argc++] = (char *)vm->name;
	/* Every check is the VMM's own: it reports what it refuses, with its exit
	 * code, on the notify pipe, so nothing is done twice before the guest runs. */
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot make a pipe");
	/* Twice forked and in its own session: the VMM outlives us and is nobody's zombie. */
	child = fork();
	if (child == 0) {
		setsid();
		if (fork() == 0)
			start_exec(argv, pipefd[1], incoming);
		_exit(0);
	}
	close(pipefd[1]);
	if (child < 0) {
		ret = vi_error_errno(VI_EFAIL, errno, "cannot fork");
	} else {
		waitpid(child, &status, 0);
		ret = start_wait(vm, pipefd[0], incoming >= 0 ? 0 : START_TIMEOUT_MS);
	}
	close(pipefd[0]);
	return ret;
}

static int plugin_start(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	(void)ctx;
	return start_vmm(vm, NULL, 0, -1);
}

static struct json_object *absolute_path_json(const char *path);
static int stop_request(const struct vi_hv_vm *vm, bool force, unsigned timeout_ms);

/* The running VMM takes the state over its guest, with vm's disks: no new process, no
 * new KVM VM. A VMM of another shape refuses (VI_EUNSUPPORTED) and goes on as it was.
 * 1 when no VMM runs. */
static int restore_in_place(const struct vi_hv_vm *vm, const char *path, unsigned flags)
{
	struct json_object *args, *disks;
	struct vmm_config cfg;
	char *shape;
	int fd, ret = plugin_connect(vm, &fd);

	if (ret == -VI_ESTATE) {
		vi_error_clear();
		return 1;
	}
	if (ret == 0 && (ret = plugin_config(vm, &cfg)) < 0)
		close(fd);
	if (ret < 0)
		return ret;
	shape = vmm_config_shape(&cfg);
	args = json_object_new_object();
	disks = json_object_new_array();
	json_object_object_add(args, "path", absolute_path_json(path));
	json_object_object_add(args, "shape", json_object_new_string(shape));
	json_object_object_add(args, "console", absolute_path_json(vm->console_log));
	json_object_object_add(args, "paused", json_object_new_boolean(flags & VI_HV_RUN_PAUSED));
	json_object_object_add(args, "unchecked",
			       json_object_new_boolean(flags & VI_HV_RUN_UNCHECKED));
	for (size_t i = 0; i < cfg.ndisks; i++) {
		struct json_object *d = json_object_new_object();

		json_object_object_add(d, "path", absolute_path_json(cfg.disks[i].path));
		json_object_object_add(d, "format", json_object_new_int(cfg.disks[i].format));
		json_object_object_add(d, "readonly",
				       json_object_new_boolean(cfg.disks[i].readonly));
		json_object_array_add(disks, d);
	}
	json_object_object_add(args, "disks", disks);
	ret = vmm_control_call(fd, "restore", args, NULL);
	close(fd);
	free(shape);
	plugin_config_release(&cfg);
	return ret;
}

static int plugin_restore(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *path,
			  unsigned flags)
{
	(void)ctx;
	if (flags & VI_HV_RUN_REPLACE) {
		int ret = restore_in_place(vm, path, flags);
		char *why;

		if (ret >= 0)
			return ret == 0 ? 0 : start_vmm(vm, path, flags, -1);
		/* Whatever the VMM did, it is stopped now, as the method promises. */
		why = xstrdup(vi_error_message());
		stop_request(vm, true, FORCE_TIMEOUT_MS);
		if (ret != -VI_EUNSUPPORTED || plugin_running(vm)) {
			ret = vi_error(-ret, "%s", why);
			free(why);
			return ret;
		}
		free(why);
		vi_error_clear();
	}
	return start_vmm(vm, path, flags, -1);
}

/* What migrate_recv() leaves in the run directory for the VMM it starts: the disks not
 * sent and the backing file names of those sent. */
#define INCOMING_FILE "incoming.json"

static struct json_object *incoming_params;

/* The machine of a migration: made with its disks closed, filled from the stream, and
 * (once the source said commit) ready to start. */
static int run_incoming(const struct vi_hv_vm *vm, int fd, const struct vmm_config *base,
			struct vmm **out)
{
	struct vmm_config cfg = *base;
	char *path = run_path(vm, INCOMING_FILE), *text = NULL;
	const char **backing = xcalloc(vm->ndisks + 1, sizeof(*backing));
	struct json_object *list, *v;
	uint64_t shared = 0;
	int ret;

	if (vi_read_file(path, &text, NULL) == 0)
		incoming_params = json_tokener_parse(text);
	unlink(path);
	if (json_object_object_get_ex(incoming_params, "shared_disks", &v))
		shared = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(incoming_params, "backing", &list))
		for (size_t i = 0; i < vm->ndisks && i < json_object_array_length(list); i++)
			if ((v = json_object_array_get_idx(list, i)))
				backing[i] = json_object_get_string(v);
	cfg.disks_later = true;
	ret = vmm_new(&cfg, out);
	if (ret == 0)
		ret = vmm_migrate_recv(*out, fd, shared, backing);
	if (ret < 0)
		vi_error_wrap("cannot receive VM '%s'", vm->name);
	free(backing);
	free(text);
	free(path);
	return ret;
}

/* The machine of opts: booted, or restored from the state file (whose pages stay mapped:
 * the fd may go once it is read). */
static int run_machine(const struct vi_hv_vm *vm, const struct vi_hv_run_opts *opts,
		       const struct vmm_config *cfg, struct vmm **out)
{
	int fd = -1, ret;

	if (opts->incoming_fd >= 0)
		return run_incoming(vm, opts->incoming_fd, cfg, out);
	if (opts->state_path) {
		fd = open(opts->state_path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return vi_error_errno(errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL, errno,
					      "cannot open the state '%s'", opts->state_path);
	}
	ret = vmm_new(cfg, out);
	if (ret == 0 && fd >= 0) {
		ret = vmm_restore(*out, fd,
				  (opts->flags & VI_HV_RUN_UNCHECKED) ? VMM_RESTORE_UNCHECKED_PAGES : 0);
		if (ret < 0)
			vi_error_wrap("cannot restore VM '%s' from '%s'", vm->name,
				      opts->state_path);
	} else if (ret == 0) {
		ret = vmm_boot(*out);
	}
	/* Before vmm_start() the pause holds the vCPUs back. */
	if (ret == 0 && (opts->flags & VI_HV_RUN_PAUSED))
		ret = vmm_pause(*out);
	if (fd >= 0)
		close(fd);
	return ret;
}

static void run_signal(struct vmm *vm, int fd, void *opaque)
{
	struct signalfd_siginfo si;

	(void)opaque;
	if (read(fd, &si, sizeof(si)) == sizeof(si))
		vmm_request_exit(vm, VMM_EXIT_STOPPED);
}

static void run_notify(int fd, const char *msg)
{
	if (fd < 0)
		return;
	if (write(fd, msg, strlen(msg)) < 0)
		host->log(VI_LOG_DEBUG, "nobody waits for the start of the VM");
	close(fd);
}

static int plugin_run(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
		      const struct vi_hv_run_opts *opts)
{
	int notify_fd = opts->notify_fd;
	char *pid_path = run_path(vm, "pid"), *sock = run_path(vm, "control.sock"), *pid = NULL;
	struct vmm_control *ctl = NULL;
	struct vmm *machine = NULL;
	struct vmm_config cfg = { 0 };
	sigset_t stop_signals;
	int log_fd = -1, sig_fd = -1, ret, reason;
	char *failure;

	(void)ctx;
	signal(SIGPIPE, SIG_IGN);
	if (plugin_running(vm)) {
		ret = vi_error(VI_ESTATE, "VM '%s' is already running", vm->name);
		goto fail;
	}
	ret = plugin_config(vm, &cfg);
	if (ret == 0)
		ret = bridges_check(vm, &cfg);
	if (ret == 0)
		ret = vi_mkdir_p(vm->run_dir, 0700);
	if (ret < 0)
		goto fail;
	log_fd = open(vm->console_log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (log_fd < 0) {
		ret = vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", vm->console_log);
		goto fail;
	}
	cfg.console_fd = log_fd;
	/* Stop signals arrive through the event loop, as a forced stop would. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	sig_fd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
	ret = run_machine(vm, opts, &cfg, &machine);
	if (ret == 0)
		ret = vmm_watch_fd(machine, sig_fd, run_signal, NULL);
	if (ret == 0)
		ret = vmm_control_open(machine, sock, backend->name, &ctl);
	if (ret == 0) {
		pid = xasprintf("%d\n", (int)getpid());
		ret = vi_write_file_replace(pid_path, pid, strlen(pid), 0644);
	}
	/* Everything but the guest is ready before the source pauses it no more. */
	if (ret == 0 && opts->incoming_fd >= 0)
		ret = vmm_migrate_commit(machine, opts->incoming_fd);
	if (ret == 0)
		ret = vmm_start(machine);
	/* The guest runs here now: the source hears it and gives its VM up. */
	if (ret == 0 && opts->incoming_fd >= 0 && vmm_migrate_running(opts->incoming_fd) < 0)
		host->log(VI_LOG_WARN, "VM '%s' runs, but its source did not hear it: %s",
			  vm->name, vi_error_message());
	if (opts->incoming_fd >= 0)
		close(opts->incoming_fd);
	if (ret < 0 && opts->incoming_fd >= 0 && machine) {
		uint64_t shared = 0;
		struct json_object *v;

		if (json_object_object_get_ex(incoming_params, "shared_disks", &v))
			shared = (uint64_t)json_object_get_int64(v);
		vmm_migrate_discard(machine, shared);
	}
	json_object_put(incoming_params);
	incoming_params = NULL;
	if (ret < 0)
		goto fail;
	run_notify(notify_fd, "1");
	notify_fd = -1;
	reason = vmm_wait(machine);
	if (reason == VMM_EXIT_ERROR)
		ret = vi_error(VI_EFAIL, "VM '%s' failed: %s", vm->name, vmm_exit_message(machine));
	else
		host->log(VI_LOG_DEBUG, "VM '%s' ended: %s", vm->name,
			  vmm_exit_reason_name(reason));
fail:
	if (notify_fd >= 0) {
		failure = xasprintf("0%d %s", vi_error_code(), vi_error_message());
		run_notify(notify_fd, failure);
		free(failure);
	}
	/* The pid file goes first, the socket last: a client that sees the socket close
	 * finds the VM stopped, its cgroup gone. */
	if (machine)
		vmm_cgroup_leave(machine);
	if (pid)
		unlink(pid_path);
	vmm_control_close(ctl);
	vmm_free(machine);
	plugin_config_release(&cfg);
	if (sig_fd >= 0)
		close(sig_fd);
	if (log_fd >= 0)
		close(log_fd);
	free(pid);
	free(pid_path);
	free(sock);
	return ret;
}

/* Waits until the VMM closes fd (it has gone) for up to timeout_ms. */
static bool wait_gone(int fd, unsigned timeout_ms)
{
	struct timespec start, now;
	char buf[256];

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long waited;

		clock_gettime(CLOCK_MONOTONIC, &now);
		waited = (now.tv_sec - start.tv_sec) * 1000 +
			 (now.tv_nsec - start.tv_nsec) / 1000000;
		if (waited >= (long)timeout_ms)
			return false;
		if (poll(&p, 1, (int)(timeout_ms - waited)) <= 0)
			continue;
		if (read(fd, buf, sizeof(buf)) <= 0)
			return true;
	}
}

/* A request after which the VMM ends: done once it has gone (args is consumed). */
static int call_until_gone(const struct vi_hv_vm *vm, const char *cmd, struct json_object *args,
			   unsigned timeout_ms)
{
	int fd, ret = plugin_connect(vm, &fd);

	if (ret < 0) {
		json_object_put(args);
		return ret;
	}
	ret = vmm_control_call(fd, cmd, args, NULL);
	if (ret == 0 && !wait_gone(fd, timeout_ms))
		ret = vi_error(VI_ETIMEOUT, "VM '%s' did not stop within %u ms", vm->name,
			       timeout_ms);
	close(fd);
	return ret;
}

static int stop_request(const struct vi_hv_vm *vm, bool force, unsigned timeout_ms)
{
	struct json_object *args = json_object_new_object();

	json_object_object_add(args, "force", json_object_new_boolean(force));
	return call_until_gone(vm, "stop", args, timeout_ms);
}

static int plugin_stop(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned flags,
		       unsigned timeout_ms)
{
	int ret;

	(void)ctx;
	if (!(flags & VI_HV_STOP_FORCE)) {
		ret = stop_request(vm, false, timeout_ms);
		if (ret != -VI_ETIMEOUT)
			return ret;
		host->log(VI_LOG_WARN, "VM '%s' ignored the graceful stop; forcing it", vm->name);
	}
	return stop_request(vm, true, FORCE_TIMEOUT_MS);
}

static int plugin_pause(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	(void)ctx;
	return plugin_call(vm, "pause", NULL, NULL);
}

static int plugin_resume(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	(void)ctx;
	return plugin_call(vm, "resume", NULL, NULL);
}

static int plugin_stats(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
			struct vi_hv_stats *out)
{
	struct json_object *reply;
	int ret = plugin_call(vm, "stats", NULL, &reply);

	(void)ctx;
	if (ret < 0)
		return ret;
	out->vcpus = (unsigned)json_int(reply, "vcpus");
	out->exits = (uint64_t)json_int(reply, "exits");
	out->cpu_time_ns = (uint64_t)json_int(reply, "cpu_time_ns");
	out->memory = (uint64_t)json_int(reply, "memory");
	out->disk_rd_bytes = (uint64_t)json_int(reply, "disk_rd_bytes");
	out->disk_wr_bytes = (uint64_t)json_int(reply, "disk_wr_bytes");
	out->net_rx_bytes = (uint64_t)json_int(reply, "net_rx_bytes");
	out->net_tx_bytes = (uint64_t)json_int(reply, "net_tx_bytes");
	/* 0, 1, 2 there: no device, no driver, driven; a host older than the fields has a
	 * smaller struct. */
	if (out->struct_size < offsetof(struct vi_hv_stats, balloon_driver) + sizeof(int)) {
		json_object_put(reply);
		return 0;
	}
	out->cpu_hotplug_driver = VI_HV_DRIVER_NO_DEVICE + (int)json_int(reply, "cpu_hotplug_driver");
	out->memory_driver = VI_HV_DRIVER_NO_DEVICE + (int)json_int(reply, "memory_driver");
	out->balloon_driver = VI_HV_DRIVER_NO_DEVICE + (int)json_int(reply, "balloon_driver");
	if (out->struct_size >= offsetof(struct vi_hv_stats, disk_wr_ops) + sizeof(uint64_t)) {
		out->disk_rd_ops = (uint64_t)json_int(reply, "disk_rd_ops");
		out->disk_wr_ops = (uint64_t)json_int(reply, "disk_wr_ops");
	}
	json_object_put(reply);
	return 0;
}

static struct json_object *forward_json(size_t nic, const struct vi_hv_forward *f)
{
	struct json_object *args = json_object_new_object();

	json_object_object_add(args, "nic", json_object_new_int64((int64_t)nic));
	json_object_object_add(args, "udp", json_object_new_boolean(f->proto == VI_HV_UDP));
	if (f->host_addr)
		json_object_object_add(args, "host_addr", json_object_new_string(f->host_addr));
	json_object_object_add(args, "host_port", json_object_new_int64(f->host_port));
	json_object_object_add(args, "guest_port", json_object_new_int64(f->guest_port));
	return args;
}

static int plugin_forward_add(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
			      const struct vi_hv_forward *f)
{
	(void)ctx;
	return plugin_call(vm, "forward_add", forward_json(nic, f), NULL);
}

static int plugin_set_vcpus(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned n)
{
	struct json_object *args = json_object_new_object();

	(void)ctx;
	json_object_object_add(args, "vcpus", json_object_new_int64(n));
	return plugin_call(vm, "set_vcpus", args, NULL);
}

static int plugin_forward_remove(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
				 const struct vi_hv_forward *f)
{
	(void)ctx;
	return plugin_call(vm, "forward_remove", forward_json(nic, f), NULL);
}

static int plugin_nic_address(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
			      char *buf, size_t len)
{
	struct json_object *args = json_object_new_object(), *reply, *v;
	int ret;

	(void)ctx;
	json_object_object_add(args, "nic", json_object_new_int64((int64_t)nic));
	ret = plugin_call(vm, "nic_address", args, &reply);
	if (ret < 0)
		return ret;
	if (json_object_object_get_ex(reply, "address", &v))
		snprintf(buf, len, "%s", json_object_get_string(v));
	else
		ret = vi_error(VI_EFAIL, "the VMM gave no address for network card %zu", nic);
	json_object_put(reply);
	return ret;
}

static int plugin_net_up(struct vi_hv_ctx *ctx, const char *name, const char *cidr)
{
	(void)ctx;
	return vmm_net_up(host->home, name, cidr);
}

static int plugin_net_down(struct vi_hv_ctx *ctx, const char *name)
{
	(void)ctx;
	return vmm_net_down(host->home, name);
}

/* The VMM's working directory need not be ours: it is sent absolute paths. */
static struct json_object *absolute_path_json(const char *path)
{
	char cwd[PATH_MAX], *abs;
	struct json_object *o;

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return json_object_new_string(path);
	abs = xasprintf("%s/%s", cwd, path);
	o = json_object_new_string(abs);
	free(abs);
	return o;
}

static int plugin_switch_disks(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
			       const char *const *overlays)
{
	struct json_object *args = json_object_new_object(), *list = json_object_new_array();

	(void)ctx;
	for (size_t i = 0; i < vm->ndisks; i++)
		json_object_array_add(list, overlays[i] ? absolute_path_json(overlays[i]) : NULL);
	json_object_object_add(args, "overlays", list);
	return plugin_call(vm, "switch_disks", args, NULL);
}

/* The VMM writes the state on its worker thread; the reply comes when it is written. */
static int plugin_save(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *path,
		       unsigned flags)
{
	struct json_object *args = json_object_new_object();
	bool live = flags & VI_HV_SAVE_LIVE;

	(void)ctx;
	json_object_object_add(args, "path", absolute_path_json(path));
	json_object_object_add(args, "live", json_object_new_boolean(live));
	if (flags & VI_HV_SAVE_NOSYNC)
		json_object_object_add(args, "sync", json_object_new_boolean(false));
	if (live)
		return plugin_call(vm, "save", args, NULL);
	return call_until_gone(vm, "save", args, FORCE_TIMEOUT_MS);
}

static int plugin_console(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, int in_fd,
			  int out_fd, int escape)
{
	struct pollfd p[2];
	char buf[4096];
	int fd = -1, ret = plugin_connect(vm, &fd);

	(void)ctx;
	if (ret == 0)
		ret = vmm_control_call(fd, "console", NULL, NULL);
	if (ret < 0) {
		if (fd >= 0)
			close(fd);
		return ret;
	}
	p[0] = (struct pollfd){ .fd = fd, .events = POLLIN };
	p[1] = (struct pollfd){ .fd = in_fd, .events = POLLIN };
	for (;;) {
		ssize_t n;

		/* Once the input ends, keep showing output until the VM stops. */
		if (poll(p, p[1].fd >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			ret = vi_error_errno(VI_EFAIL, errno, "cannot wait for the console");
			break;
		}
		if (p[0].revents) {
			n = read(fd, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (vi_write_all(out_fd, buf, (size_t)n) < 0) {
				ret = vi_error_errno(VI_EFAIL, errno, "cannot write the console");
				break;
			}
		}
		if (p[1].fd >= 0 && p[1].revents) {
			char *esc;

			n = read(in_fd, buf, sizeof(buf));
			if (n <= 0) {
				p[1].fd = -1;
				continue;
			}
			esc = escape >= 0 ? memchr(buf, escape, (size_t)n) : NULL;
			if (esc)
				n = esc - buf;
			if (n > 0 && send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n) {
				ret = vi_error(VI_EFAIL, "the VMM stopped taking input");
				break;
			}
			if (esc)
				break;
		}
	}
	close(fd);
	return ret;
}

/* --- migration ----------------------------------------------------------------------- */

/* Fields of m the host's ABI version may not have: zero beyond its struct_size. */
#define MIGRATE_FIELD(m, field)                                                             \
	((m)->struct_size >= offsetof(struct vi_hv_migrate, field) + sizeof((m)->field)      \
		 ? (m)->field                                                                \
		 : 0)

static void migrate_progress(const struct vi_hv_migrate *m, struct json_object *job)
{
	struct vi_hv_migrate_progress p = { .struct_size = sizeof(p) };
	struct json_object *v;
	void (*progress)(void *, const struct vi_hv_migrate_progress *) =
		MIGRATE_FIELD(m, progress);

	if (!progress || !job)
		return;
	p.iteration = (unsigned)json_int(job, "iteration");
	p.sent = (uint64_t)json_int(job, "sent");
	p.remaining = (uint64_t)json_int(job, "remaining");
	p.dirty_rate = (uint64_t)json_int(job, "dirty_rate");
	p.bandwidth = (uint64_t)json_int(job, "bandwidth");
	p.phase = "memory";
	if (json_object_object_get_ex(job, "phase", &v))
		for (int i = VMM_MIGRATE_MEMORY; i <= VMM_MIGRATE_COMMIT; i++)
			if (!strcmp(json_object_get_string(v), vmm_migrate_phase_name(i)))
				p.phase = vmm_migrate_phase_name(i);
	progress(MIGRATE_FIELD(m, opaque), &p);
}

static void migrate_result(const struct vi_hv_migrate *m, struct json_object *reply)
{
	struct vi_hv_migrate_result *r = MIGRATE_FIELD(m, result);
	struct json_object *v;

	if (!r || !reply)
		return;
	r->total_ms = json_object_object_get_ex(reply, "total_ms", &v) ? json_object_get_double(v) : 0;
	r->downtime_ms =
		json_object_object_get_ex(reply, "downtime_ms", &v) ? json_object_get_double(v) : 0;
	r->bytes = (uint64_t)json_int(reply, "sent");
	r->disk_bytes = (uint64_t)json_int(reply, "disk_bytes");
	r->iterations = (unsigned)json_int(reply, "iteration");
	r->unconfirmed = json_object_object_get_ex(reply, "unconfirmed", &v) &&
			 json_object_get_boolean(v);
}

/* The running VMM sends its VM over m->fd on its job thread; we relay its progress from
 * status until the job answers, then wait for the VMM to end. */
static int plugin_migrate_send(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
			       const struct vi_hv_migrate *m)
{
	struct json_object *args = json_object_new_object(), *reply = NULL, *v;
	int fd = -1, asker = -1, ret;

	(void)ctx;
	if (m->fd < 0) {
		json_object_put(args);
		return vi_error(VI_EUSAGE, "hv-%s migrates over a stream the host connects",
				backend->name);
	}
	json_object_object_add(args, "cmd", json_object_new_string("migrate"));
	json_object_object_add(args, "bandwidth", json_object_new_int64((int64_t)m->bandwidth));
	json_object_object_add(args, "downtime_ms",
			       json_object_new_int64(MIGRATE_FIELD(m, downtime_ms)));
	json_object_object_add(args, "timeout_s", json_object_new_int64(MIGRATE_FIELD(m, timeout_s)));
	json_object_object_add(args, "converge", json_object_new_int(MIGRATE_FIELD(m, converge)));
	json_object_object_add(args, "shared_disks",
			       json_object_new_int64((int64_t)MIGRATE_FIELD(m, shared_disks)));
	ret = plugin_connect(vm, &fd);
	if (ret == 0)
		ret = plugin_connect(vm, &asker);
	if (ret == 0)
		ret = vmm_control_send_fd(fd, args, m->fd);
	json_object_put(args);
	while (ret == 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		struct json_object *status = NULL;

		if (poll(&p, 1, 250) > 0) {
			ret = vmm_control_recv(fd, &reply);
			break;
		}
		if (vmm_control_call(asker, "status", NULL, &status) == 0 &&
		    json_object_object_get_ex(status, "job", &v))
			migrate_progress(m, v);
		json_object_put(status);
	}
	migrate_result(m, reply);
	if (ret == 0 && !(json_object_object_get_ex(reply, "ok", &v) && json_object_get_boolean(v)))
		ret = vi_error(json_object_object_get_ex(reply, "unconfirmed", &v) &&
					       json_object_get_boolean(v)
				       ? VI_ESTATE
				       : VI_EFAIL,
			       "%s", json_object_object_get_ex(reply, "error", &v)
					     ? json_object_get_string(v)
					     : "the migration failed");
	/* The guest runs on the destination: ours ends. */
	if (ret == 0 && !wait_gone(fd, FORCE_TIMEOUT_MS))
		ret = vi_error(VI_ETIMEOUT, "the VMM of '%s' did not end after the migration",
			       vm->name);
	json_object_put(reply);
	if (fd >= 0)
		close(fd);
	if (asker >= 0)
		close(asker);
	return ret;
}

/* Starts the VMM on the stream, which it reads, loads and takes over on "commit". */
static int plugin_migrate_recv(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
			       const struct vi_hv_migrate *m)
{
	struct json_object *params = json_object_new_object(), *list = json_object_new_array();
	const char *const *backing = MIGRATE_FIELD(m, backing);
	char *path = run_path(vm, INCOMING_FILE);
	const char *text;
	int ret;

	(void)ctx;
	if (m->fd < 0)
		ret = vi_error(VI_EUSAGE, "hv-%s migrates over a stream the host connects",
			       backend->name);
	else if (plugin_running(vm))
		ret = vi_error(VI_ESTATE, "VM '%s' is already running here", vm->name);
	else
		ret = vi_mkdir_p(vm->run_dir, 0700);
	json_object_object_add(params, "shared_disks",
			       json_object_new_int64((int64_t)MIGRATE_FIELD(m, shared_disks)));
	for (size_t i = 0; i < vm->ndisks; i++)
		json_object_array_add(list, backing && backing[i]
						    ? absolute_path_json(backing[i])
						    : NULL);
	json_object_object_add(params, "backing", list);
	text = json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN);
	if (ret == 0)
		ret = vi_write_file_replace(path, text, strlen(text), 0600);
	if (ret == 0)
		ret = start_vmm(vm, NULL, 0, m->fd);
	unlink(path);
	json_object_put(params);
	free(path);
	return ret;
}

static int plugin_dirty_rate(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned ms,
			     uint64_t *bytes_per_s)
{
	struct json_object *args = json_object_new_object(), *reply;
	int ret;

	(void)ctx;
	json_object_object_add(args, "ms", json_object_new_int64(ms));
	ret = plugin_call(vm, "dirty_rate", args, &reply);
	if (ret < 0)
		return ret;
	*bytes_per_s = (uint64_t)json_int(reply, "bytes_per_s");
	json_object_put(reply);
	return 0;
}

static int plugin_resize_disk(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t disk,
			      uint64_t bytes)
{
	struct json_object *args = json_object_new_object();

	(void)ctx;
	json_object_object_add(args, "disk", json_object_new_int64((int64_t)disk));
	json_object_object_add(args, "bytes", json_object_new_int64((int64_t)bytes));
	return plugin_call(vm, "resize_disk", args, NULL);
}

static int plugin_set_cpu_quota(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
				unsigned percent)
{
	struct json_object *args = json_object_new_object();

	(void)ctx;
	json_object_object_add(args, "percent", json_object_new_int64(percent));
	json_object_object_add(args, "name", json_object_new_string(vm->name));
	return plugin_call(vm, "cpu_quota", args, NULL);
}

static int plugin_set_memory(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, uint64_t bytes)
{
	struct json_object *args = json_object_new_object();

	(void)ctx;
	json_object_object_add(args, "bytes", json_object_new_int64((int64_t)bytes));
	return plugin_call(vm, "set_memory", args, NULL);
}

const struct vi_hv_ops *vmm_plugin_init(const struct vi_host *h, const struct vmm_backend *b)
{
	host = h;
	vi_plugin_set_host(h);
	backend = b;
	ops = (struct vi_hv_ops){
		.struct_size = sizeof(ops),
		.abi_version = VI_HV_ABI_VERSION,
		.name = b->name,
		.description = b->description,
		.features = VI_HV_F_DIRECT_BOOT | VI_HV_F_USER_NET | VI_HV_F_RESTORE_RUNNING,
		.probe = plugin_probe,
		.define = plugin_define,
		.start = plugin_start,
		.run = plugin_run,
		.stop = plugin_stop,
		.pause = plugin_pause,
		.resume = plugin_resume,
		.state = plugin_state,
		.console = plugin_console,
		.stats = plugin_stats,
		.switch_disks = plugin_switch_disks,
		.resize_disk = plugin_resize_disk,
		.save = plugin_save,
		.restore = plugin_restore,
		.forward_add = plugin_forward_add,
		.set_vcpus = plugin_set_vcpus,
		.forward_remove = plugin_forward_remove,
		.nic_address = plugin_nic_address,
		.net_up = plugin_net_up,
		.net_down = plugin_net_down,
		.migrate_send = plugin_migrate_send,
		.migrate_recv = plugin_migrate_recv,
		.dirty_rate = plugin_dirty_rate,
		.set_memory = plugin_set_memory,
		.set_cpu_quota = plugin_set_cpu_quota,
	};
	return &ops;
}
