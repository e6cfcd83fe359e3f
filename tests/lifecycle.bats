#!/usr/bin/env bats
# create, start, stop, console and destroy: what every backend shares, checked
# with the fixture backend (the backends' own suites boot real guests).

load lib/common

setup() {
	common_setup
	use_fixture_plugins
	kernel=$BATS_TEST_TMPDIR/vmlinuz
	echo "not really a kernel" >"$kernel"
}

@test "create records the VM with a fresh identity" {
	run -0 vi create --hv fixture --kernel "$kernel" --cpus 2 --memory 1G web1
	[ "$output" = "created VM 'web1' on fixture: 2 vCPUs, 1G" ]
	run -0 vi show --json web1
	[ "$(jq -r .vm.cpus <<<"$output")" = 2 ]
	[ "$(jq -r .vm.kernel <<<"$output")" = "$kernel" ]
	[ "$(jq -r .vm.hostname <<<"$output")" = web1 ]
	[[ $(jq -r .vm.uuid <<<"$output") =~ ^[0-9a-f-]{36}$ ]]
	[[ $(jq -r .vm.machine_id <<<"$output") =~ ^[0-9a-f]{32}$ ]]
}

@test "two VMs get different identities" {
	vi -q create --hv fixture --kernel "$kernel" --nic user a
	vi -q create --hv fixture --kernel "$kernel" --nic user b
	[ "$(vi show --json a | jq -r .vm.uuid)" != "$(vi show --json b | jq -r .vm.uuid)" ]
	[ "$(vi show --json a | jq -r .vm.nics[0].mac)" != "$(vi show --json b | jq -r .vm.nics[0].mac)" ]
}

@test "create --json, and clone --json; times are whole milliseconds" {
	run -0 vi create --json --hv fixture --kernel "$kernel" web1
	[ "$(jq -r .vm.name <<<"$output")" = web1 ]
	[ "$(jq -r .vm.state <<<"$output")" = stopped ]
	[[ $(jq -r .milliseconds <<<"$output") =~ ^[0-9]+$ ]]
	run -0 vi clone --json web1 web2
	[[ $(jq -r .milliseconds <<<"$output") =~ ^[0-9]+$ ]]
}

@test "create of an existing name is a conflict and changes nothing" {
	vi -q create --hv fixture --kernel "$kernel" web1
	local before
	before=$(cat "$VI_HOME/vms/web1/vm.yaml")
	run -5 vi create --hv fixture --kernel "$kernel" --cpus 4 web1
	[ "$output" = "vi: error: VM 'web1' already exists" ]
	[ "$(cat "$VI_HOME/vms/web1/vm.yaml")" = "$before" ]
}

@test "bad input to create is one clear error and leaves nothing behind" {
	run -3 vi create --hv fixture --kernel /nonexistent/vmlinuz web1
	[ "$output" = "vi: error: kernel '/nonexistent/vmlinuz': No such file or directory" ]
	run -2 vi create --hv fixture web1
	[ "$output" = "vi: error: nothing to boot: give --template, --kernel or --disk" ]
	run -2 vi create --hv fixture --kernel "$kernel" --cpus 0 web1
	[ "$output" = "vi: error: invalid value for --cpus '0': must be from 1 to 4096" ]
	run -2 vi create --hv fixture --kernel "$kernel" --cpus 4 --max-cpus 2 web1
	[ "$output" = "vi: error: --max-cpus 2 is below --cpus 4" ]
	run -2 vi create --hv fixture --kernel "$kernel" --memory 1T0 web1
	[ "$output" = "vi: error: invalid value for --memory '1T0': expected a size such as 512M or 2G" ]
	run -2 vi create --hv fixture --kernel "$kernel" --memory 1M web1
	[ "$output" = "vi: error: --memory must be at least 16M" ]
	run -2 vi create --hv fixture --initrd "$kernel" web1
	[ "$output" = "vi: error: --initrd and --cmdline need --kernel" ]
	run -2 vi create --hv fixture --kernel "$kernel" --nic wifi web1
	[ "$output" = "vi: error: invalid --nic 'wifi': the mode must be user, nat, tap, bridge, network or none" ]
	run -2 vi create --hv fixture --kernel "$kernel" --nic bridge web1
	[ "$output" = "vi: error: invalid --nic 'bridge': bridge needs a name, as in bridge:NAME" ]
	run -2 vi create --hv fixture --disk "$kernel,rw" web1
	[ "$output" = "vi: error: invalid --disk '$kernel,rw': unknown option 'rw'" ]
	run -2 vi create --hv fixture --disk "$kernel,format=vmdk" web1
	[ "$output" = "vi: error: unknown disk format 'vmdk': expected qcow2 or raw" ]
	run -2 vi create --hv fixture --kernel "$kernel" 'bad name'
	[ "$output" = "vi: error: invalid VM name 'bad name': only letters, digits, '.', '_' and '-' are allowed" ]
	run -3 vi create --hv nosuch --kernel "$kernel" web1
	[ "$output" = "vi: error: no backend named 'nosuch' (see 'vi hv list')" ]
	run -4 vi create --hv older --kernel "$kernel" web1
	[ "$output" = "vi: error: backend 'older' is not usable here: older ops table" ]
	[ -z "$(ls "$VI_HOME/vms")" ]
	[ -z "$(ls "$VI_HOME/vms/.staging")" ]
}

@test "disks are recorded with their format read from the file" {
	qemu-img create -q -f qcow2 "$BATS_TEST_TMPDIR/a.qcow2" 64M
	truncate -s 64M "$BATS_TEST_TMPDIR/b.raw"
	vi -q create --hv fixture --disk "$BATS_TEST_TMPDIR/a.qcow2" --disk "$BATS_TEST_TMPDIR/b.raw,ro" web1
	run -0 vi show --json web1
	[ "$(jq -r '.vm.disks[0].format' <<<"$output")" = qcow2 ]
	[ "$(jq -r '.vm.disks[1].format' <<<"$output")" = raw ]
	[ "$(jq -r '.vm.disks[1].readonly' <<<"$output")" = true ]
}

@test "a backend without a method says so, exit 4" {
	vi -q create --hv bare --kernel "$kernel" web1
	run -4 vi start web1
	[ "$output" = "vi: error: backend 'bare' does not support starting VMs" ]
	run -4 vi create --hv bare --kernel "$kernel" --start web2
	[ "$output" = "vi: error: VM 'web2' was created but did not start: backend 'bare' does not support starting VMs" ]
}

@test "a backend that cannot boot the way the VM asks: exit 4, nothing made" {
	qemu-img create -q -f qcow2 "$BATS_TEST_TMPDIR/a.qcow2" 1G
	run -4 vi create --hv bare --disk "$BATS_TEST_TMPDIR/a.qcow2" web1
	[ "$output" = "vi: error: backend 'bare' boots a kernel directly: VM 'web1' has none" ]
	[ -z "$(ls "$VI_HOME/vms")" ]
	[ -z "$(ls "$VI_HOME/vms/.staging")" ]
}

@test "--connect with a backend that runs VMs on this host only: usage error, nothing made" {
	run -2 vi create --hv fixture --kernel "$kernel" --connect test:///elsewhere web1
	[ "$output" = "vi: error: backend 'fixture' runs VMs on this host only: --connect 'test:///elsewhere' means nothing to it" ]
	[ -z "$(ls "$VI_HOME/vms")" ]
}

@test "stop and console of a stopped VM are wrong state, exit 5" {
	vi -q create --hv fixture --kernel "$kernel" web1
	run -5 vi stop web1
	[ "$output" = "vi: error: VM 'web1' is not running" ]
	run -5 vi console web1
	[ "$output" = "vi: error: VM 'web1' is not running" ]
	run -2 vi console --escape abc web1
	[ "$output" = "vi: error: invalid escape key 'abc': use ^X or a single character" ]
}

@test "start of a running VM is wrong state, exit 5" {
	vi -q create --hv fixture --kernel "$kernel" web1
	echo running >"$VI_HOME/vms/web1/run/fixture-state"
	run -5 vi start web1
	[ "$output" = "vi: error: VM 'web1' is already running" ]
}

@test "destroy removes the VM and its state, and only that" {
	vi -q create --hv fixture --kernel "$kernel" web1
	vi -q create --hv fixture --kernel "$kernel" web2
	run -0 vi destroy web1
	[ "$output" = "destroyed VM 'web1'" ]
	[ ! -e "$VI_HOME/vms/web1" ]
	[ -f "$kernel" ]
	run -3 vi show web1
	run -0 vi show web2
	run -3 vi destroy web1
	[ "$output" = "vi: error: no VM named 'web1'" ]
}

@test "destroy of a VM whose backend is gone needs --force" {
	vi -q create --hv fixture --kernel "$kernel" web1
	sed -i 's/^hv: fixture/hv: vanished/' "$VI_HOME/vms/web1/vm.yaml"
	run -4 vi destroy web1
	[ "$output" = "vi: error: VM 'web1' uses backend 'vanished', which is not installed" ]
	run -0 vi destroy --force web1
	[ ! -e "$VI_HOME/vms/web1" ]
}

@test "a command on a VM another command holds waits, then reports it busy" {
	vi -q create --hv fixture --kernel "$kernel" web1
	flock "$VI_HOME/vms/.locks/web1" sleep 3 &
	sleep 0.5
	VI_LOCK_TIMEOUT=1 run -5 vi destroy web1
	[ "$output" = "vi: error: VM 'web1' is busy: another vi command is working on it" ]
	wait
	run -0 vi destroy web1
}
