/* vm.yaml: the VM definition, read and written through lib/yaml-doc. */
#include "vm.h"
#include "error.h"
#include "util.h"
#include "yaml-doc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *vi_disk_format_name(int format)
{
	return format == VI_DISK_QCOW2 ? "qcow2" : "raw";
}

int vi_disk_format_parse(const char *s, int *format)
{
	if (!strcmp(s, "qcow2"))
		*format = VI_DISK_QCOW2;
	else if (!strcmp(s, "raw"))
		*format = VI_DISK_RAW;
	else
		return vi_error(VI_EUSAGE, "unknown disk format '%s': expected qcow2 or raw", s);
	return 0;
}


static int load_disks(struct vi_yaml *y, yaml_node_t *seq, struct vi_vm *vm)
{
	static const char *const keys[] = { "path", "format", "readonly", "layer" };
	yaml_node_t *item;

	if (seq->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, seq, VI_EUSAGE, "'disks' must be a list");
	vi_yaml_seq_foreach(y, seq, item)
	{
		struct vi_vm_disk *d;
		const char *fmt = "raw";
		bool ro = false;
		int rc;

		if ((rc = vi_yaml_expect_map(y, item, "a disk")) < 0 ||
		    (rc = vi_yaml_check_keys(y, item, keys, ARRAY_SIZE(keys))) < 0)
			return rc;
		vm->disks = xrealloc(vm->disks, (vm->ndisks + 1) * sizeof(*vm->disks));
		d = &vm->disks[vm->ndisks++];
		memset(d, 0, sizeof(*d));
		if ((rc = vi_yaml_dup_str(y, item, "path", true, &d->path)) < 0 ||
		    (rc = vi_yaml_dup_str(y, item, "layer", false, &d->layer)) < 0 ||
		    (rc = vi_yaml_get_str(y, item, "format", false, &fmt)) < 0 ||
		    (rc = vi_yaml_get_bool(y, item, "readonly", false, &ro)) < 0)
			return rc;
		if (vi_disk_format_parse(fmt, &d->format) < 0)
			return vi_yaml_error(y, vi_yaml_get(y, item, "format"), VI_EUSAGE, "%s",
					     vi_error_message());
		d->readonly = ro;
	}
	return 0;
}

int vi_vm_forward_parse(const char *spec, struct vi_vm_forward *f)
{
	char *s = xstrdup(spec), *proto = strchr(s, '/'), *parts[3] = { NULL }, *p = s;
	unsigned long ports[2];
	size_t n = 0;
	int rc = 0;

	memset(f, 0, sizeof(*f));
	if (proto)
		*proto++ = 0;
	while (n < 3 && (parts[n++] = strsep(&p, ":")))
		;
	if (parts[n - 1] == NULL)
		n--;
	if (p || n < 2) {
		rc = vi_error(VI_EUSAGE, "invalid forward '%s': expected [ADDR:]HOST:GUEST[/tcp|/udp]",
			      spec);
		goto out;
	}
	for (size_t i = 0; i < 2; i++) {
		const char *t = parts[n - 2 + i];
		char *end;
		errno = 0;
		ports[i] = strtoul(t, &end, 10);
		if (!*t || *end || errno || ports[i] > 65535 || (i == 1 && ports[i] == 0)) {
			rc = vi_error(VI_EUSAGE, "invalid forward '%s': '%s' is not a port (1-65535)",
				      spec, t);
			goto out;
		}
	}
	if (n == 3) {
		struct in_addr a;
		if (inet_pton(AF_INET, parts[0], &a) != 1) {
			rc = vi_error(VI_EUSAGE, "invalid forward '%s': '%s' is not an IPv4 address",
				      spec, parts[0]);
			goto out;
		}
	}
	if (proto && strcmp(proto, "tcp") && strcmp(proto, "udp")) {
		rc = vi_error(VI_EUSAGE, "invalid forward '%s': the protocol must be tcp or udp",
			      spec);
		goto out;
	}
	f->proto = proto && !strcmp(proto, "udp") ? VI_HV_UDP : VI_HV_TCP;
	f->host_addr = xstrdup(n == 3 ? parts[0] : "127.0.0.1");
	f->host_port = (unsigned)ports[0];
	f->guest_port = (unsigned)ports[1];
	f->auto_port = f->host_port == 0;
out:
	free(s);
	return rc;
}

char *vi_vm_forward_str(const struct vi_vm_forward *f)
{
	return xasprintf("%s:%u->%u/%s", f->host_addr, f->host_port, f->guest_port,
			 f->proto == VI_HV_UDP ? "udp" : "tcp");
}

void vi_vm_forward_release(struct vi_vm_forward *f)
{
	free(f->host_addr);
	memset(f, 0, sizeof(*f));
}

struct vi_vm_forward *vi_vm_nic_forward(const struct vi_vm_nic *n, unsigned guest_port)
{
	for (size_t i = 0; i < n->nforwards; i++)
		if (n->forwards[i].proto == VI_HV_TCP && n->forwards[i].guest_port == guest_port)
			return &n->forwards[i];
	return NULL;
}

static int load_forwards(struct vi_yaml *y, yaml_node_t *seq, struct vi_vm_nic *n)
{
	static const char *const keys[] = { "host", "guest", "proto", "auto" };
	yaml_node_t *item;

	if (seq->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, seq, VI_EUSAGE, "'forwards' must be a list");
	vi_yaml_seq_foreach(y, seq, item)
	{
		const char *host = NULL, *proto = "tcp";
		uint64_t guest = 0;
		bool auto_port = false;
		char *spec;
		int rc;

		if ((rc = vi_yaml_expect_map(y, item, "a forward")) < 0 ||
		    (rc = vi_yaml_check_keys(y, item, keys, ARRAY_SIZE(keys))) < 0 ||
		    (rc = vi_yaml_get_str(y, item, "host", true, &host)) < 0 ||
		    (rc = vi_yaml_get_uint(y, item, "guest", true, 1, 65535, &guest)) < 0 ||
		    (rc = vi_yaml_get_str(y, item, "proto", false, &proto)) < 0 ||
		    (rc = vi_yaml_get_bool(y, item, "auto", false, &auto_port)) < 0)
			return rc;
		n->forwards = xrealloc(n->forwards, (n->nforwards + 1) * sizeof(*n->forwards));
		spec = xasprintf("%s:%" PRIu64 "/%s", host, guest, proto ? proto : "tcp");
		rc = vi_vm_forward_parse(spec, &n->forwards[n->nforwards]);
		free(spec);
		if (rc < 0)
			return vi_yaml_error(y, item, VI_EUSAGE, "%s", vi_error_message());
		n->forwards[n->nforwards++].auto_port = auto_port;
	}
	return 0;
}

static int load_nics(struct vi_yaml *y, yaml_node_t *seq, struct vi_vm *vm)
{
	static const char *const keys[] = { "mac", "mode", "source", "forwards" };
	yaml_node_t *item;

	if (seq->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, seq, VI_EUSAGE, "'nics' must be a list");
	vi_yaml_seq_foreach(y, seq, item)
	{
		struct vi_vm_nic *n;
		int rc;

		if ((rc = vi_yaml_expect_map(y, item, "a nic")) < 0 ||
		    (rc = vi_yaml_check_keys(y, item, keys, ARRAY_SIZE(keys))) < 0)
			return rc;
		vm->nics = xrealloc(vm->nics, (vm->nnics + 1) * sizeof(*vm->nics));
		n = &vm->nics[vm->nnics++];
		memset(n, 0, sizeof(*n));
		if ((rc = vi_yaml_dup_str(y, item, "mac", true, &n->mac)) < 0 ||
		    (rc = vi_yaml_dup_str(y, item, "mode", false, &n->mode)) < 0 ||
		    (rc = vi_yaml_dup_str(y, item, "source", false, &n->source)) < 0)
			return rc;
		if (!n->mode)
			n->mode = xstrdup("user");
		yaml_node_t *f = vi_yaml_get(y, item, "forwards");
		if (f && (rc = load_forwards(y, f, n)) < 0)
			return rc;
	}
	return 0;
}

static bool label_chars(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static int label_key_check(const char *spec, const char *key, size_t len)
{
	if (len == 0 || len > VI_LABEL_MAX || !isalnum((unsigned char)key[0]) ||
	    !label_chars(key, len))
		return vi_error(VI_EUSAGE,
				"invalid label '%s': a key is 1-63 of A-Z a-z 0-9 . _ -, beginning "
				"with a letter or digit",
				spec);
	return 0;
}

int vi_label_parse(const char *spec, size_t *key_len, const char **value)
{
	const char *eq = strchr(spec, '=');
	int rc;

	if (!eq)
		return vi_error(VI_EUSAGE, "invalid label '%s': expected KEY=VALUE", spec);
	if ((rc = label_key_check(spec, spec, (size_t)(eq - spec))) < 0)
		return rc;
	if (strlen(eq + 1) > VI_LABEL_MAX || !label_chars(eq + 1, strlen(eq + 1)))
		return vi_error(VI_EUSAGE,
				"invalid label '%s': a value is 0-63 of A-Z a-z 0-9 . _ -", spec);
	*key_len = (size_t)(eq - spec);
	*value = eq + 1;
	return 0;
}

/* Where key is in vm's sorted labels, or where it would go (*found false). */
static size_t label_find(const struct vi_vm *vm, const char *key, size_t len, bool *found)
{
	size_t lo = 0, hi = vm->nlabels;

	*found = false;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const char *l = vm->labels[mid];
		size_t llen = strcspn(l, "=");
		int c = strncmp(l, key, llen < len ? llen : len);
		if (c == 0 && llen == len) {
			*found = true;
			return mid;
		}
		if (c < 0 || (c == 0 && llen < len))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const char *vi_vm_label(const struct vi_vm *vm, const char *key)
{
	bool found;
	size_t i = label_find(vm, key, strlen(key), &found);

	return found ? vm->labels[i] + strlen(key) + 1 : NULL;
}

int vi_vm_label_apply(struct vi_vm *vm, const char *spec, bool allow_remove)
{
	size_t len = strlen(spec), i;
	const char *value;
	bool found;
	int rc;

	if (allow_remove && !strchr(spec, '=')) {
		if (!len || spec[len - 1] != '-')
			return vi_error(VI_EUSAGE, "invalid label '%s': expected KEY=VALUE or KEY-",
					spec);
		if ((rc = label_key_check(spec, spec, len - 1)) < 0)
			return rc;
		i = label_find(vm, spec, len - 1, &found);
		if (found) {
			free(vm->labels[i]);
			memmove(&vm->labels[i], &vm->labels[i + 1],
				(--vm->nlabels - i) * sizeof(*vm->labels));
		}
		return 0;
	}
	if ((rc = vi_label_parse(spec, &len, &value)) < 0)
		return rc;
	i = label_find(vm, spec, len, &found);
	if (found) {
		free(vm->labels[i]);
	} else {
		vm->labels = xrealloc(vm->labels, (vm->nlabels + 1) * sizeof(*vm->labels));
		memmove(&vm->labels[i + 1], &vm->labels[i], (vm->nlabels++ - i) * sizeof(*vm->labels));
	}
	vm->labels[i] = xstrdup(spec);
	return 0;
}

static int load_labels(struct vi_yaml *y, yaml_node_t *map, struct vi_vm *vm)
{
	yaml_node_t *k, *v;

	if (map->type != YAML_MAPPING_NODE)
		return vi_yaml_error(y, map, VI_EUSAGE, "'labels' must be a mapping");
	vi_yaml_map_foreach(y, map, k, v)
	{
		const char *key = vi_yaml_scalar(k), *value = vi_yaml_scalar(v);
		if (!key || !value)
			return vi_yaml_error(y, key ? v : k, VI_EUSAGE, "a label is KEY: VALUE");
		char *spec = xasprintf("%s=%s", key, value);
		int rc = label_key_check(spec, key, strlen(key));
		if (rc == 0)
			rc = vi_vm_label_apply(vm, spec, false);
		free(spec);
		if (rc < 0)
			return vi_yaml_error(y, k, VI_EUSAGE, "%s", vi_error_message());
	}
	return 0;
}

#define HEADROOM_MAX_CPUS 32
#define HEADROOM_BLOCK (128ull << 20)

unsigned vi_headroom_cpus(unsigned cpus)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned host = n < 1 ? 1 : n > HEADROOM_MAX_CPUS ? HEADROOM_MAX_CPUS : (unsigned)n;

	return host > cpus ? host : cpus;
}

uint64_t vi_headroom_memory(uint64_t memory)
{
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	uint64_t host = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : memory;
	uint64_t want = memory <= VI_VM_MAX_MEMORY / 4 ? memory * 4 : VI_VM_MAX_MEMORY;

	if (want > host)
		want = host;
	want -= want % HEADROOM_BLOCK;
	return want > memory ? want : memory;
}

int vi_vm_load(const char *path, struct vi_vm *vm)
{
	static const char *const keys[] = {
		"schema", "name", "uuid", "hv", "connect", "cpus", "max_cpus", "memory",
		"max_memory", "kernel", "initrd", "cmdline", "guest_type", "disks", "nics",
		"hostname", "machine_id", "template", "template_digest", "ready_marker", "origin",
		"created", "user", "ready_ssh", "snapshot", "cpu_quota", "labels",
	};
	struct vi_yaml y;
	yaml_node_t *root, *n;
	uint64_t u;
	int rc;

	memset(vm, 0, sizeof(*vm));
	if ((rc = vi_yaml_load_file(&y, path)) < 0)
		return rc;
	root = vi_yaml_root(&y);
	if ((rc = vi_yaml_expect_map(&y, root, "a VM definition")) < 0 ||
	    (rc = vi_yaml_check_keys(&y, root, keys, ARRAY_SIZE(keys))) < 0)
		goto cleanup;
	if ((rc = vi_yaml_check_schema(&y, root, VI_VM_SCHEMA)) < 0)
		goto cleanup;
	if ((rc = vi_yaml_dup_str(&y, root, "name", true, &vm->name)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "uuid", true, &vm->uuid)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "hv", true, &vm->hv)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "connect", false, &vm->connect)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "kernel", false, &vm->kernel)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "initrd", false, &vm->initrd)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "cmdline", false, &vm->cmdline)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "guest_type", false, &vm->guest_type)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "hostname", false, &vm->hostname)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "machine_id", false, &vm->machine_id)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "template", false, &vm->template)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "template_digest", false, &vm->template_digest)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "ready_marker", false, &vm->ready_marker)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "origin", false, &vm->origin)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "user", false, &vm->user)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "snapshot", false, &vm->snapshot)) < 0 ||
	    (rc = vi_yaml_get_bool(&y, root, "ready_ssh", false, &vm->ready_ssh)) < 0)
		goto cleanup;
	if ((rc = vi_yaml_get_uint(&y, root, "cpus", true, 1, 4096, &u)) < 0)
		goto cleanup;
	vm->cpus = u;
	u = vm->cpus;
	if ((rc = vi_yaml_get_uint(&y, root, "max_cpus", false, vm->cpus, 4096, &u)) < 0)
		goto cleanup;
	vm->max_cpus = u;
	if ((rc = vi_yaml_get_size(&y, root, "memory", true, 1, VI_VM_MAX_MEMORY,
				    &vm->memory)) < 0)
		goto cleanup;
	vm->max_memory = vm->memory;
	if ((rc = vi_yaml_get_size(&y, root, "max_memory", false, 1, VI_VM_MAX_MEMORY,
				    &vm->max_memory)) < 0)
		goto cleanup;
	if (vm->max_memory < vm->memory) {
		rc = vi_yaml_error(&y, vi_yaml_get(&y, root, "max_memory"), VI_EUSAGE,
				   "'max_memory' is smaller than 'memory'");
		goto cleanup;
	}
	u = 0;
	if ((rc = vi_yaml_get_uint(&y, root, "cpu_quota", false, 0, VI_VM_MAX_CPU_QUOTA, &u)) < 0)
		goto cleanup;
	vm->cpu_quota = (unsigned)u;
	if ((rc = vi_yaml_get_uint(&y, root, "created", false, 0, INT64_MAX, &u)) < 0)
		goto cleanup;
	vm->created = rc == 0 ? (time_t)u : 0;
	rc = 0;
	if ((n = vi_yaml_get(&y, root, "disks")) && (rc = load_disks(&y, n, vm)) < 0)
		goto cleanup;
	if ((n = vi_yaml_get(&y, root, "nics")) && (rc = load_nics(&y, n, vm)) < 0)
		goto cleanup;
	if ((n = vi_yaml_get(&y, root, "labels")) && (rc = load_labels(&y, n, vm)) < 0)
		goto cleanup;
	rc = 0;
cleanup:
	vi_yaml_release(&y);
	if (rc < 0)
		vi_vm_release(vm);
	return rc;
}

int vi_vm_save(const char *path, const struct vi_vm *vm)
{
	struct vi_yaml_out o;

	vi_yaml_out_init(&o);
	vi_yaml_out_map_start(&o);
	vi_yaml_out_uint(&o, "schema", VI_VM_SCHEMA);
	vi_yaml_out_str(&o, "name", vm->name);
	vi_yaml_out_str(&o, "uuid", vm->uuid);
	vi_yaml_out_str(&o, "hv", vm->hv);
	vi_yaml_out_str(&o, "connect", vm->connect);
	vi_yaml_out_uint(&o, "cpus", vm->cpus);
	vi_yaml_out_uint(&o, "max_cpus", vm->max_cpus ? vm->max_cpus : vm->cpus);
	vi_yaml_out_size(&o, "memory", vm->memory);
	vi_yaml_out_size(&o, "max_memory", vm->max_memory ? vm->max_memory : vm->memory);
	if (vm->cpu_quota)
		vi_yaml_out_uint(&o, "cpu_quota", vm->cpu_quota);
	vi_yaml_out_str(&o, "kernel", vm->kernel);
	vi_yaml_out_str(&o, "initrd", vm->initrd);
	vi_yaml_out_str(&o, "cmdline", vm->cmdline);
	vi_yaml_out_str(&o, "guest_type", vm->guest_type);
	if (vm->ndisks) {
		vi_yaml_out_scalar(&o, "disks");
		vi_yaml_out_seq_start(&o);
		for (size_t i = 0; i < vm->ndisks; i++) {
			vi_yaml_out_map_start(&o);
			vi_yaml_out_str(&o, "path", vm->disks[i].path);
			vi_yaml_out_str(&o, "format", vi_disk_format_name(vm->disks[i].format));
			if (vm->disks[i].readonly)
				vi_yaml_out_bool(&o, "readonly", true);
			vi_yaml_out_str(&o, "layer", vm->disks[i].layer);
			vi_yaml_out_end(&o);
		}
		vi_yaml_out_end(&o);
	}
	if (vm->nnics) {
		vi_yaml_out_scalar(&o, "nics");
		vi_yaml_out_seq_start(&o);
		for (size_t i = 0; i < vm->nnics; i++) {
			vi_yaml_out_map_start(&o);
			vi_yaml_out_str(&o, "mac", vm->nics[i].mac);
			vi_yaml_out_str(&o, "mode", vm->nics[i].mode);
			vi_yaml_out_str(&o, "source", vm->nics[i].source);
			if (vm->nics[i].nforwards) {
				vi_yaml_out_scalar(&o, "forwards");
				vi_yaml_out_seq_start(&o);
			}
			for (size_t j = 0; j < vm->nics[i].nforwards; j++) {
				const struct vi_vm_forward *f = &vm->nics[i].forwards[j];
				char *host = xasprintf("%s:%u", f->host_addr, f->host_port);
				vi_yaml_out_map_start(&o);
				vi_yaml_out_str(&o, "host", host);
				vi_yaml_out_uint(&o, "guest", f->guest_port);
				if (f->proto == VI_HV_UDP)
					vi_yaml_out_str(&o, "proto", "udp");
				if (f->auto_port)
					vi_yaml_out_bool(&o, "auto", true);
				vi_yaml_out_end(&o);
				free(host);
			}
			if (vm->nics[i].nforwards)
				vi_yaml_out_end(&o);
			vi_yaml_out_end(&o);
		}
		vi_yaml_out_end(&o);
	}
	vi_yaml_out_str(&o, "hostname", vm->hostname);
	vi_yaml_out_str(&o, "machine_id", vm->machine_id);
	vi_yaml_out_str(&o, "template", vm->template);
	vi_yaml_out_str(&o, "template_digest", vm->template_digest);
	vi_yaml_out_str(&o, "ready_marker", vm->ready_marker);
	vi_yaml_out_str(&o, "origin", vm->origin);
	vi_yaml_out_str(&o, "user", vm->user);
	if (vm->ready_ssh)
		vi_yaml_out_bool(&o, "ready_ssh", true);
	vi_yaml_out_str(&o, "snapshot", vm->snapshot);
	if (vm->nlabels) {
		vi_yaml_out_scalar(&o, "labels");
		vi_yaml_out_map_start(&o);
		for (size_t i = 0; i < vm->nlabels; i++) {
			char *key = xstrndup(vm->labels[i], strcspn(vm->labels[i], "="));
			vi_yaml_out_str(&o, key, vm->labels[i] + strlen(key) + 1);
			free(key);
		}
		vi_yaml_out_end(&o);
	}
	if (vm->created)
		vi_yaml_out_uint(&o, "created", (uint64_t)vm->created);
	vi_yaml_out_end(&o);
	return vi_yaml_out_save(&o, path, 0600);
}

void vi_vm_release(struct vi_vm *vm)
{
	for (size_t i = 0; i < vm->ndisks; i++) {
		free(vm->disks[i].path);
		free(vm->disks[i].layer);
	}
	for (size_t i = 0; i < vm->nnics; i++) {
		free(vm->nics[i].mac);
		free(vm->nics[i].mode);
		free(vm->nics[i].source);
		for (size_t j = 0; j < vm->nics[i].nforwards; j++)
			vi_vm_forward_release(&vm->nics[i].forwards[j]);
		free(vm->nics[i].forwards);
	}
	free(vm->disks);
	free(vm->nics);
	for (size_t i = 0; i < vm->nlabels; i++)
		free(vm->labels[i]);
	free(vm->labels);
	char **strings[] = {
		&vm->name,	&vm->uuid,	 &vm->hv,	  &vm->connect,
		&vm->kernel,	&vm->initrd,	 &vm->cmdline,	  &vm->guest_type,
		&vm->hostname,	&vm->machine_id, &vm->template,	  &vm->template_digest,
		&vm->ready_marker, &vm->origin, &vm->user, &vm->snapshot,
	};
	for (size_t i = 0; i < ARRAY_SIZE(strings); i++)
		free(*strings[i]);
	memset(vm, 0, sizeof(*vm));
}

void vi_vm_new_identity(struct vi_vm *vm)
{
	char buf[64];

	if (!vm->uuid) {
		vi_uuid_generate(buf);
		vm->uuid = xstrdup(buf);
	}
	if (!vm->machine_id) {
		vi_random_hex(buf, 16);
		vm->machine_id = xstrdup(buf);
	}
	if (!vm->hostname)
		vm->hostname = xstrdup(vm->name);
	for (size_t i = 0; i < vm->nnics; i++) {
		if (vm->nics[i].mac)
			continue;
		/* 52:54:00 is the prefix QEMU and libvirt use for guests. */
		char hex[7];
		vi_random_hex(hex, 3);
		vm->nics[i].mac = xasprintf("52:54:00:%.2s:%.2s:%.2s", hex, hex + 2, hex + 4);
	}
}

static char *resolve(const char *dir, const char *path)
{
	return path[0] == '/' ? xstrdup(path) : xasprintf("%s/%s", dir, path);
}

void vi_vm_hv_init(struct vi_vm_hv *h, const struct vi_vm *vm, const char *vm_dir)
{
	struct vi_hv_vm *v = &h->vm;

	memset(h, 0, sizeof(*h));
	h->dir = xstrdup(vm_dir);
	h->run_dir = xasprintf("%s/run", vm_dir);
	h->console_log = xasprintf("%s/run/console.log", vm_dir);
	if (vm->kernel && vm->hostname && vm->machine_id)
		h->cmdline = xasprintf("%s%svi.hostname=%s vi.machine_id=%s",
				       vm->cmdline ? vm->cmdline : "", vm->cmdline ? " " : "",
				       vm->hostname, vm->machine_id);
	else
		h->cmdline = xstrdup(vm->cmdline);
	h->disks = xcalloc(vm->ndisks, sizeof(*h->disks));
	h->disk_paths = xcalloc(vm->ndisks, sizeof(*h->disk_paths));
	h->nics = xcalloc(vm->nnics, sizeof(*h->nics));
	h->disk_ptrs = xcalloc(vm->ndisks, sizeof(*h->disk_ptrs));
	h->nic_ptrs = xcalloc(vm->nnics, sizeof(*h->nic_ptrs));
	h->forwards = xcalloc(vm->nnics, sizeof(*h->forwards));
	h->forward_ptrs = xcalloc(vm->nnics, sizeof(*h->forward_ptrs));
	for (size_t i = 0; i < vm->ndisks; i++) {
		h->disk_paths[i] = resolve(vm_dir, vm->disks[i].path);
		h->disks[i] = (struct vi_hv_disk){
			.struct_size = sizeof(struct vi_hv_disk),
			.path = h->disk_paths[i],
			.format = vm->disks[i].format,
			.readonly = vm->disks[i].readonly,
		};
		h->disk_ptrs[i] = &h->disks[i];
	}
	for (size_t i = 0; i < vm->nnics; i++) {
		const struct vi_vm_nic *n = &vm->nics[i];
		h->forwards[i] = xcalloc(n->nforwards, sizeof(**h->forwards));
		h->forward_ptrs[i] = xcalloc(n->nforwards, sizeof(**h->forward_ptrs));
		for (size_t j = 0; j < n->nforwards; j++) {
			h->forwards[i][j] = (struct vi_hv_forward){
				.struct_size = sizeof(struct vi_hv_forward),
				.proto = n->forwards[j].proto,
				.host_addr = n->forwards[j].host_addr,
				.host_port = n->forwards[j].host_port,
				.guest_port = n->forwards[j].guest_port,
			};
			h->forward_ptrs[i][j] = &h->forwards[i][j];
		}
		h->nics[i] = (struct vi_hv_nic){
			.struct_size = sizeof(struct vi_hv_nic),
			.mac = n->mac,
			.mode = n->mode,
			.source = n->source,
			.forwards = h->forward_ptrs[i],
			.nforwards = n->nforwards,
		};
		h->nic_ptrs[i] = &h->nics[i];
	}
	*v = (struct vi_hv_vm){
		.struct_size = sizeof(struct vi_hv_vm),
		.name = vm->name,
		.uuid = vm->uuid,
		.dir = h->dir,
		.run_dir = h->run_dir,
		.console_log = h->console_log,
		.cpus = vm->cpus,
		.max_cpus = vm->max_cpus ? vm->max_cpus : vm->cpus,
		.memory = vm->memory,
		.max_memory = vm->max_memory ? vm->max_memory : vm->memory,
		.kernel = vm->kernel,
		.initrd = vm->initrd,
		.cmdline = h->cmdline,
		.disks = h->disk_ptrs,
		.ndisks = vm->ndisks,
		.nics = h->nic_ptrs,
		.nnics = vm->nnics,
		.hostname = vm->hostname,
		.machine_id = vm->machine_id,
		.guest_type = vm->guest_type,
	};
}

void vi_vm_hv_release(struct vi_vm_hv *h)
{
	for (size_t i = 0; i < h->vm.ndisks; i++)
		free(h->disk_paths[i]);
	free(h->disk_paths);
	free(h->disks);
	for (size_t i = 0; i < h->vm.nnics; i++) {
		free(h->forwards[i]);
		free(h->forward_ptrs[i]);
	}
	free(h->forwards);
	free(h->forward_ptrs);
	free(h->nics);
	free(h->disk_ptrs);
	free(h->nic_ptrs);
	free(h->dir);
	free(h->run_dir);
	free(h->console_log);
	free(h->cmdline);
	memset(h, 0, sizeof(*h));
}
