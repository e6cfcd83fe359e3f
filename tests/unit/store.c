/* Unit tests: the store's layout, per-VM locks between processes, atomic
 * creation and removal of VMs. */
#include "error.h"
#include "store.h"
#include "util.h"
#include "tap.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void write_vm(struct vi_store *s, const char *dir, const char *name)
{
	struct vi_vm vm = { .name = (char *)name, .uuid = "u", .hv = "qemu", .cpus = 1,
			    .memory = 1 << 20 };
	char *p = xasprintf("%s/vm.yaml", dir);
	vi_vm_save(p, &vm);
	free(p);
	(void)s;
}

int main(void)
{
	char home[] = "/tmp/vi-store-XXXXXX";
	struct vi_store s;
	char **names;
	size_t n;
	char *dir;

	mkdtemp(home);
	is_int(vi_store_open(&s, home), 0, "open creates the store");
	char *vms = vi_store_path(&s, "vms");
	ok(vi_file_exists(vms), "vms/ exists");
	free(vms);
	is_int(vi_store_list_vms(&s, &names, &n), 0, "list an empty store");
	is_int(n, 0, "no VMs");
	vi_store_names_free(names, n);

	/* Staging: invisible until committed, gone when aborted. */
	is_int(vi_store_stage_vm(&s, "b", &dir), 0, "stage b");
	write_vm(&s, dir, "b");
	vi_store_list_vms(&s, &names, &n);
	is_int(n, 0, "a staged VM is not listed");
	vi_store_names_free(names, n);
	is_int(vi_store_vm_exists(&s, "b"), -VI_ENOTFOUND, "nor does it exist");
	is_int(vi_store_commit_vm(&s, "b", dir), 0, "commit b");
	free(dir);
	is_int(vi_store_vm_exists(&s, "b"), 0, "b exists after commit");
	is_int(vi_store_stage_vm(&s, "b", &dir), -VI_ESTATE, "staging a taken name is a conflict");
	is_str(vi_error_message(), "VM 'b' already exists", "conflict message");
	is_int(vi_store_stage_vm(&s, "a", &dir), 0, "stage a");
	write_vm(&s, dir, "a");
	vi_store_abort_vm(dir);
	ok(!vi_file_exists(dir), "abort removes the staging directory");
	free(dir);
	is_int(vi_store_vm_exists(&s, "a"), -VI_ENOTFOUND, "an aborted VM does not exist");
	vi_store_stage_vm(&s, "a", &dir);
	write_vm(&s, dir, "a");
	vi_store_commit_vm(&s, "a", dir);
	free(dir);
	vi_store_list_vms(&s, &names, &n);
	ok(n == 2 && !strcmp(names[0], "a") && !strcmp(names[1], "b"), "listed sorted");
	vi_store_names_free(names, n);

	struct vi_vm vm;
	is_int(vi_store_load_vm(&s, "a", &vm), 0, "load a");
	is_str(vm.name, "a", "its name");
	vi_vm_release(&vm);
	is_int(vi_store_load_vm(&s, "zz", &vm), -VI_ENOTFOUND, "load a missing VM");
	is_str(vi_error_message(), "no VM named 'zz'", "not-found message");

	/* Locks: a second process waits, then gives up with a conflict. */
	int fd = vi_store_lock_vm(&s, "a", 0);
	ok(fd >= 0, "lock a");
	pid_t pid = fork();
	if (pid == 0) {
		int rc = vi_store_lock_vm(&s, "a", 100);
		_exit(rc == -VI_ESTATE ? 0 : 1);
	}
	int status;
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "another process cannot take a held lock and reports it busy");
	pid = fork();
	if (pid == 0) {
		int other = vi_store_lock_vm(&s, "b", 0);
		_exit(other >= 0 ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "locks are per VM");
	pid = fork();
	if (pid == 0) {
		close(fd); /* the inherited descriptor shares the parent's lock */
		int got = vi_store_lock_vm(&s, "a", 5000);
		_exit(got >= 0 ? 0 : 1);
	}
	usleep(100000);
	vi_store_unlock(fd);
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a waiter gets the lock once it is released");
	is_int(vi_store_lock_vm(&s, "../x", 0), -VI_EUSAGE, "lock refuses a bad name");

	is_int(vi_store_remove_vm(&s, "a"), 0, "remove a");
	is_int(vi_store_vm_exists(&s, "a"), -VI_ENOTFOUND, "a is gone");
	is_int(vi_store_remove_vm(&s, "a"), -VI_ENOTFOUND, "removing it again is not found");

	setenv("VI_HOME", "/somewhere", 1);
	char *def = vi_store_default_home();
	is_str(def, "/somewhere", "VI_HOME sets the default home");
	free(def);

	vi_store_release(&s);
	vi_rm_rf(home);
	return done();
}
