#!/usr/bin/env bats
# The store and VM definitions as a user sees them: vi list and vi show.

load lib/common

setup() {
	common_setup
	use_fixture_plugins
}

@test "an empty store lists nothing" {
	run -0 vi list
	[ "$output" = "" ]
	run -0 vi list --json
	[ "$(jq -c .vms <<<"$output")" = "[]" ]
}

@test "the store is created on first use with traversable directories" {
	run -0 vi list
	[ -d "$VI_HOME/images" ]
	[ -d "$VI_HOME/vms" ]
	[ -d "$VI_HOME/policies" ]
	[ "$(stat -c %a "$VI_HOME/vms")" = 711 ]
}

@test "list shows each VM with backend, state, cpus and memory, sorted" {
	define_vm web2
	define_vm web1 "template: tiny"
	mkdir -p "$VI_HOME/vms/web2/run" && echo running >"$VI_HOME/vms/web2/run/fixture-state"
	run -0 --separate-stderr vi list
	[[ ${lines[0]} == NAME*BACKEND*STATE*CPUS*MEMORY*TEMPLATE ]]
	[[ ${lines[1]} =~ ^web1\ +fixture\ +stopped\ +2\ +512M\ +tiny$ ]]
	[[ ${lines[2]} =~ ^web2\ +fixture\ +running\ +2\ +512M\ +-$ ]]
}

@test "list --json gives the same facts" {
	define_vm web1
	run -0 --separate-stderr vi --json list
	[ "$(jq -r '.vms[0].name' <<<"$output")" = web1 ]
	[ "$(jq -r '.vms[0].state' <<<"$output")" = stopped ]
	[ "$(jq -r '.vms[0].memory' <<<"$output")" = 536870912 ]
}

@test "a VM whose backend is not installed shows state unknown" {
	define_vm old
	sed -i 's/^hv: fixture/hv: vanished/' "$VI_HOME/vms/old/vm.yaml"
	run -0 --separate-stderr vi list
	[[ ${lines[1]} =~ ^old\ +vanished\ +unknown ]]
	[ "$stderr" = "vi: warning: state unknown: backend 'vanished' is not installed" ]
	run -0 --separate-stderr vi show old
	[[ $output == *"state:       unknown (backend 'vanished' is not installed)"* ]]
}

@test "one broken definition does not hide the others" {
	define_vm good
	define_vm bad "cpus: [1"
	run -0 --separate-stderr vi list
	[[ $output == *"bad "*"error"* ]]
	[[ $output == *"good "*"fixture"*"stopped"* ]]
	[[ $stderr == "vi: warning: $VI_HOME/vms/bad/vm.yaml:"* ]]
}

@test "show prints the definition" {
	define_vm web1 "max_cpus: 4" "max_memory: 2G" "kernel: /boot/vmlinuz" \
		"disks:" "  - path: disks/root.qcow2" "    format: qcow2"
	run -0 --separate-stderr vi show web1
	[[ $output == *"name:        web1"* ]]
	[[ $output == *"backend:     fixture"* ]]
	[[ $output == *"state:       stopped"* ]]
	[[ $output == *"cpus:        2 (max 4)"* ]]
	[[ $output == *"memory:      512M (max 2G)"* ]]
	[[ $output == *"disks:       vda $VI_HOME/vms/web1/disks/root.qcow2 (qcow2)"* ]]
}

@test "show --json" {
	define_vm web1
	run -0 --separate-stderr vi show --json web1
	[ "$(jq -r .vi <<<"$output")" = 1 ]
	[ "$(jq -r .vm.uuid <<<"$output")" = 8a1f5c3e-1111-4222-8333-444455556666 ]
	[ "$(jq -r .vm.max_cpus <<<"$output")" = 2 ]
}

@test "show of a missing VM is not found, exit 3" {
	run -3 vi show nosuch
	[ "$output" = "vi: error: no VM named 'nosuch'" ]
}

@test "show of an invalid name is a usage error, exit 2" {
	run -2 vi show ../etc
	[ "$output" = "vi: error: invalid VM name '../etc': it must start with a letter or digit" ]
	run -2 vi show 'a b'
	[ "$output" = "vi: error: invalid VM name 'a b': only letters, digits, '.', '_' and '-' are allowed" ]
}

@test "a malformed definition is reported with file, line and column" {
	define_vm web1 "memmory: 1G"
	run -2 vi show web1
	[ "$output" = "vi: error: $VI_HOME/vms/web1/vm.yaml:7:1: unknown key 'memmory'; did you mean 'memory'?" ]
}

@test "a bad value is reported where it is" {
	define_vm web1
	sed -i 's/^cpus: 2/cpus: two/' "$VI_HOME/vms/web1/vm.yaml"
	run -2 vi show web1
	[ "$output" = "vi: error: $VI_HOME/vms/web1/vm.yaml:5:7: invalid cpus 'two': expected a whole number" ]
}

@test "a definition from a newer vi is refused as unsupported" {
	define_vm web1
	sed -i 's/^schema: 1/schema: 9/' "$VI_HOME/vms/web1/vm.yaml"
	run -4 vi show web1
	[ "$output" = "vi: error: $VI_HOME/vms/web1/vm.yaml:1:9: schema 9 is newer than this vi understands (1)" ]
}

@test "a NULL backend method is reported as unsupported, exit 4" {
	define_vm web1
	run -4 vi __vmm-run web1
	[ "$output" = "vi: error: backend 'fixture' does not support running VMs in-process" ]
}

@test "a backend error in state shows as unknown, not as a crash" {
	define_vm web1
	mkdir -p "$VI_HOME/vms/web1/run" && echo error >"$VI_HOME/vms/web1/run/fixture-state"
	run -0 --separate-stderr vi list
	[[ ${lines[1]} =~ ^web1\ +fixture\ +unknown ]]
}
