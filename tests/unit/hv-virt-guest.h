/* What the hv-qemu tests share: guests booting Debian's kernel with a busybox
 * initramfs (tests/lib/mkinitramfs) under libvirt, each on its own overlay
 * of one empty disk, and the host's side of their consoles and user NICs.
 * Header-only, included once per test program after tap.h and
 * hv-virt-host.h. */
#ifndef VI_TEST_HV_VIRT_GUEST_H
#define VI_TEST_HV_VIRT_GUEST_H

#include "util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MiB (1024ull * 1024)
#define BOOT_TIMEOUT_S 120
#define MARKER "VI-QEMU-TEST-READY"

/* hv-qemu's table and connection, the test's directory (QEMU must pass
 * through it), and what every guest boots from. */
static const struct vi_hv_ops *ops;
static struct vi_hv_ctx ctx;
static char work[64];
static char kernel[4096], initrd[4096], disk[4096];

struct guest {
	char name[64], uuid[40], mac[18], run_dir[4200], log[4300], overlay[4300];
	struct vi_hv_disk disk;
	struct vi_hv_nic nic;
	const struct vi_hv_disk *disk_ptr;
	const struct vi_hv_nic *nic_ptr;
	struct vi_hv_vm vm;
};

static inline __attribute__((format(printf, 1, 2))) int run(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	if (rc)
		printf("# failed (%d): %s\n", rc, cmd);
	return rc;
}

static inline double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Does the file hold `text`? */
static inline bool file_has(const char *path, const char *text)
{
	static char buf[1 << 20]; /* the log may hold NUL bytes: no string functions */
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	return memmem(buf, (size_t)n, text, strlen(text)) != NULL;
}

static inline bool wait_for_text(const char *path, const char *text, double timeout_s)
{
	double end = now() + timeout_s;

	while (now() < end) {
		if (file_has(path, text))
			return true;
		usleep(50000);
	}
	return false;
}

/* The newest /boot/vmlinuz-*, copied next to the initramfs built for it: the
 * modules it loads must come from the same kernel. `more` adds arguments to
 * tests/lib/mkinitramfs, quoted for the shell. */
static inline int prepare_artifacts(const char *more)
{
	const char *top = getenv("VI_TOP");
	glob_t g;
	int rc;

	if (glob("/boot/vmlinuz-*", 0, NULL, &g) || !g.gl_pathc) {
		printf("# no kernel in /boot\n");
		return -1;
	}
	const char *src = g.gl_pathv[g.gl_pathc - 1];
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", work);
	snprintf(initrd, sizeof(initrd), "%s/initrd.gz", work);
	snprintf(disk, sizeof(disk), "%s/base.qcow2", work);
	rc = run("cp '%s' '%s'", src, kernel);
	rc = rc ? rc
		: run("'%s/tests/lib/mkinitramfs' -o '%s' --marker %s --kernel-version '%s' "
		      "--module virtio_pci --module virtio_blk --module virtio_balloon --net %s",
		      top && *top ? top : ".", initrd, MARKER, src + strlen("/boot/vmlinuz-"), more);
	rc = rc ? rc : run("qemu-img create -q -f qcow2 '%s' 64M", disk);
	globfree(&g);
	return rc;
}

static inline void guest_init(struct guest *g, const char *tag, const char *cmdline)
{
	snprintf(g->name, sizeof(g->name), "vi-test-%d-%s", (int)getpid(), tag);
	vi_uuid_generate(g->uuid);
	/* As vi gives every NIC: a restore needs the MAC the guest was saved with. */
	snprintf(g->mac, sizeof(g->mac), "52:54:00:%.2s:%.2s:%.2s", g->uuid, g->uuid + 2,
		 g->uuid + 4);
	snprintf(g->run_dir, sizeof(g->run_dir), "%s/%s", work, tag);
	snprintf(g->log, sizeof(g->log), "%s/console.log", g->run_dir);
	mkdir(g->run_dir, 0711);
	snprintf(g->overlay, sizeof(g->overlay), "%s/%s.qcow2", work, tag);
	run("qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s'", disk, g->overlay);
	g->disk = (struct vi_hv_disk){ sizeof(g->disk), g->overlay, VI_DISK_QCOW2, 0, 0 };
	g->nic = (struct vi_hv_nic){ sizeof(g->nic), g->mac, "user", NULL };
	g->disk_ptr = &g->disk;
	g->nic_ptr = &g->nic;
	g->vm = (struct vi_hv_vm){
		.struct_size = sizeof(g->vm),
		.name = g->name,
		.uuid = g->uuid,
		.dir = g->run_dir,
		.run_dir = g->run_dir,
		.console_log = g->log,
		.cpus = 1, .max_cpus = 2,
		.memory = 256 * MiB, .max_memory = 384 * MiB,
		.kernel = kernel,
		.initrd = initrd,
		.cmdline = cmdline,
		.disks = &g->disk_ptr, .ndisks = 1,
		.nics = &g->nic_ptr, .nnics = 1,
	};
}

static inline int state_of(struct guest *g)
{
	struct vi_hv_state st = { .struct_size = sizeof(st) };
	int rc = ops->state(&ctx, &g->vm, &st);

	return rc ? rc : st.state;
}

/* Leaves no domain behind, whatever the test did. */
static inline void forget(struct guest *g)
{
	int state = state_of(g);

	if (state == VI_HV_RUNNING || state == VI_HV_PAUSED)
		ops->stop(&ctx, &g->vm, VI_HV_STOP_FORCE, 0);
	if (state != VI_HV_UNDEFINED)
		ops->undefine(&ctx, &g->vm);
}

/* A socket on 127.0.0.1, listening when `listening`; *port gets its port. */
static inline int loopback_socket(bool listening, unsigned *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    (listening && listen(fd, 1)) || getsockname(fd, (struct sockaddr *)&sa, &len)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

/* A port nothing holds now. */
static inline unsigned free_port(void)
{
	unsigned port = 0;
	int fd = loopback_socket(false, &port);

	if (fd >= 0)
		close(fd);
	return port;
}

/* Does 127.0.0.1:port lead to the guest's web server? */
static inline bool reaches_guest(unsigned port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { 20, 0 };
	static const char req[] = "GET / HTTP/1.0\r\n\r\n";
	char buf[4096];
	size_t len = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = '\0';
	return strstr(buf, "VI-GUEST-WEB") != NULL;
}

#endif
