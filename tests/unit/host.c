/* Unit tests: the host a VM moves to for `migrate: least-loaded`, chosen from
 * the hosts' answers to `vi host info`. */
#include "error.h"
#include "host.h"
#include "util.h"
#include "tap.h"

#include <json-c/json.h>
#include <stdlib.h>

#define GIB (1024ull * 1024 * 1024)

static struct vi_host_entry entries[] = { { .name = "h1" }, { .name = "h2" }, { .name = "h3" } };

/* Answer i: info is the JSON that host gave, or NULL with problem. */
static void answer(struct vi_host_answer *a, size_t i, const char *info, const char *problem)
{
	a[i] = (struct vi_host_answer){ .e = &entries[i], .status = info ? 0 : 255 };
	a[i].info = info ? json_tokener_parse(info) : NULL;
	a[i].problem = problem ? xstrdup(problem) : NULL;
}

static char *info(const char *home, uint64_t free_gib, int running)
{
	return xasprintf("{\"hostname\": \"pool\", \"home\": \"%s\", \"backends\": [\"vtx\", "
			 "\"qemu\"], \"memory\": %llu, \"memory_free\": %llu, "
			 "\"vms_running\": %d}",
			 home, 64 * GIB, (unsigned long long)(free_gib * GIB), running);
}

static void release(struct vi_host_answer *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		vi_host_answer_release(&a[i]);
}

/* Picks among answers made of three infos (NULL: unreachable). */
static int pick(const char *i1, const char *i2, const char *i3, const struct vi_vm *vm,
		const struct vi_host_entry **out)
{
	struct vi_host_answer a[3];
	int rc;

	answer(a, 0, i1, "unreachable: connection timed out");
	answer(a, 1, i2, "unreachable: no route to host");
	answer(a, 2, i3, "unreachable: connection refused");
	*out = NULL;
	rc = vi_hosts_pick(a, 3, vm, "/here", "pool", out);
	release(a, 3);
	return rc;
}

/* The libvirt URI of a host, derived from its ssh address and $VI_SSH. */
static void libvirt_uris(void)
{
	struct vi_host_entry e = { 0 };
	char *uri;

	unsetenv("VI_SSH");
	vi_host_parse_uri("ssh://root@198.18.0.11", &e);
	uri = vi_host_libvirt_uri(&e, "qemu");
	is_str(uri, "qemu+ssh://root@198.18.0.11/system", "from the ssh address, for QEMU");
	free(uri);
	uri = vi_host_libvirt_uri(&e, "xen");
	is_str(uri, "xen+ssh://root@198.18.0.11/system", "and for Xen");
	free(uri);
	vi_host_entry_release(&e);
	vi_host_parse_uri("ssh://[fd00::2]:2222", &e);
	setenv("VI_SSH", "ssh -i /k/id key -o StrictHostKeyChecking=no -o LogLevel=ERROR", 1);
	uri = vi_host_libvirt_uri(&e, "qemu");
	is_str(uri, "qemu+ssh://[fd00::2]:2222/system?keyfile=/k/id&no_verify=1",
	       "an IPv6 address and port; vi's key and host key policy");
	free(uri);
	setenv("VI_SSH", "ssh -i/k/a%b", 1);
	uri = vi_host_libvirt_uri(&e, "qemu");
	is_str(uri, "qemu+ssh://[fd00::2]:2222/system?keyfile=/k/a%25b", "a key path escaped");
	free(uri);
	e.libvirt = xstrdup("qemu+tcp://10.0.0.2/system");
	uri = vi_host_libvirt_uri(&e, "qemu");
	is_str(uri, "qemu+tcp://10.0.0.2/system", "--libvirt as given");
	free(uri);
	unsetenv("VI_SSH");
	vi_host_entry_release(&e);
}

int main(void)
{
	struct vi_vm vm = { .name = "web", .hv = "vtx", .memory = 2 * GIB };
	const struct vi_host_entry *e;
	char *a = info("/h1", 8, 3), *b = info("/h2", 16, 5), *c = info("/h3", 16, 2);
	char *self = info("/here", 32, 0), *small = info("/h3", 2, 0);
	char *no_qemu = xstrdup("{\"home\": \"/h2\", \"backends\": [\"qemu\"], "
				"\"memory_free\": 68719476736}");

	is_int(pick(a, b, c, &vm, &e), 0, "three hosts: one is chosen");
	is_str(e ? e->name : NULL, "h3", "the most free memory, fewer VMs running of a tie");
	/* Free memory within a sixteenth is alike: the fewer VMs running decide. */
	char *near1 = info("/h1", 16, 4), *near2 = info("/h2", 15, 1), *far = info("/h3", 12, 0);
	is_int(pick(near1, near2, far, &vm, &e), 0, "free memory alike");
	is_str(e ? e->name : NULL, "h2", "the one running fewer VMs, of two with alike free memory");
	free(near1);
	free(near2);
	free(far);
	is_int(pick(a, b, NULL, &vm, &e), 0, "one unreachable");
	is_str(e ? e->name : NULL, "h2", "the most free memory among those that answer");
	is_int(pick(a, NULL, self, &vm, &e), 0, "this host among them");
	is_str(e ? e->name : NULL, "h1", "is not chosen, though it has the most free");
	is_int(pick(a, no_qemu, small, &vm, &e), 0, "a host without the backend, one too small");
	is_str(e ? e->name : NULL, "h1", "neither is chosen");
	is_int(pick(NULL, no_qemu, small, &vm, &e), -VI_ENOTFOUND, "none can take it");
	is_str(vi_error_message(),
	       "no host can take VM 'web': h1 unreachable: connection timed out, "
	       "h2 vtx is not usable there, h3 2.0G free",
	       "one line says why of each");
	is_int(vi_hosts_pick(NULL, 0, &vm, "/here", "pool", &e), -VI_ENOTFOUND, "no hosts");
	is_str(vi_error_message(), "no host can take VM 'web': the inventory has no hosts",
	       "said so");
	libvirt_uris();
	free(a);
	free(b);
	free(c);
	free(self);
	free(small);
	free(no_qemu);
	return done();
}
