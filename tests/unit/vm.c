/* Unit tests: vm.yaml round trip, identity, the backend view. */
#include "error.h"
#include "util.h"
#include "vm.h"
#include "tap.h"

#include <stdlib.h>
#include <unistd.h>

int main(void)
{
	char dir[] = "/tmp/vi-vm-XXXXXX";
	struct vi_vm vm = { 0 }, back;
	struct vi_vm_disk disks[] = {
		{ .path = "disks/root.qcow2", .format = VI_DISK_QCOW2 },
		{ .path = "/images/data.raw", .format = VI_DISK_RAW, .readonly = true },
	};
	struct vi_vm_nic nics[] = { { .mode = "user" } };

	mkdtemp(dir);
	char *path = xasprintf("%s/vm.yaml", dir);
	vm.name = xstrdup("web1");
	vm.hv = xstrdup("qemu");
	vm.cpus = 2;
	vm.max_cpus = 8;
	vm.memory = 512ull << 20;
	vm.max_memory = 4ull << 30;
	vm.kernel = xstrdup("/boot/vmlinuz");
	vm.cmdline = xstrdup("console=ttyS0 root=/dev/vda quiet: \"yes\"");
	vm.template = xstrdup("tiny");
	vm.created = 1790000000;
	vm.disks = xcalloc(2, sizeof(*vm.disks));
	vm.ndisks = 2;
	for (int i = 0; i < 2; i++) {
		vm.disks[i] = disks[i];
		vm.disks[i].path = xstrdup(disks[i].path);
	}
	vm.nics = xcalloc(1, sizeof(*vm.nics));
	vm.nnics = 1;
	vm.nics[0].mode = xstrdup(nics[0].mode);
	vi_vm_new_identity(&vm);
	ok(vm.uuid && strlen(vm.uuid) == 36, "identity: uuid");
	ok(vm.machine_id && strlen(vm.machine_id) == 32, "identity: machine-id");
	is_str(vm.hostname, "web1", "identity: hostname defaults to the name");
	ok(vm.nics[0].mac && !strncmp(vm.nics[0].mac, "52:54:00:", 9) && strlen(vm.nics[0].mac) == 17,
	   "identity: MAC in the 52:54:00 range (%s)", vm.nics[0].mac);

	is_int(vi_vm_save(path, &vm), 0, "save");
	is_int(vi_vm_load(path, &back), 0, "load");
	is_str(back.name, vm.name, "name survives");
	is_str(back.uuid, vm.uuid, "uuid survives");
	is_int(back.cpus, 2, "cpus");
	is_int(back.max_cpus, 8, "max_cpus");
	is_int(back.memory, 512ull << 20, "memory");
	is_int(back.max_memory, 4ull << 30, "max_memory");
	is_str(back.cmdline, vm.cmdline, "command line with quotes and colons survives");
	is_int(back.ndisks, 2, "disks");
	is_int(back.disks[0].format, VI_DISK_QCOW2, "disk format");
	ok(back.disks[1].readonly && !back.disks[0].readonly, "read-only flag");
	is_str(back.nics[0].mac, vm.nics[0].mac, "MAC survives");
	is_int(back.created, 1790000000, "creation time");
	is_str(back.connect, NULL, "absent keys stay NULL");

	struct vi_vm_hv view;
	vi_vm_hv_init(&view, &back, "/store/vms/web1");
	is_str(view.vm.disks[0]->path, "/store/vms/web1/disks/root.qcow2",
	       "relative disk paths resolve against the VM's directory");
	is_str(view.vm.disks[1]->path, "/images/data.raw", "absolute disk paths stay");
	is_str(view.vm.console_log, "/store/vms/web1/run/console.log", "console log path");
	is_int(view.vm.struct_size, sizeof(struct vi_hv_vm), "view carries its size");
	vi_vm_hv_release(&view);
	vi_vm_release(&back);

	/* max below the current value is refused where it is written. */
	FILE *f = fopen(path, "w");
	fprintf(f, "schema: 1\nname: a\nuuid: u\nhv: qemu\ncpus: 4\nmax_cpus: 2\nmemory: 1G\n");
	fclose(f);
	is_int(vi_vm_load(path, &back), -VI_EUSAGE, "max_cpus below cpus");
	ok(strstr(vi_error_message(), "vm.yaml:6:11: invalid max_cpus '2': must be from 4 to 4096") != NULL,
	   "max_cpus error at its value (%s)", vi_error_message());
	f = fopen(path, "w");
	fprintf(f, "schema: 1\nname: a\nuuid: u\nhv: qemu\ncpus: 1\nmemory: 1G\ndisks:\n  - path: x\n    format: vmdk\n");
	fclose(f);
	is_int(vi_vm_load(path, &back), -VI_EUSAGE, "unknown disk format");
	ok(strstr(vi_error_message(), "vm.yaml:9:13: unknown disk format 'vmdk'") != NULL,
	   "disk format error at its value (%s)", vi_error_message());

	vi_vm_release(&vm);
	vi_rm_rf(dir);
	free(path);
	return done();
}
