#!/usr/bin/env bats
# vi grow on hv-qemu with real boots of the shipped `tiny` template: what the
# guest itself sees afterwards.

load lib/common
load lib/template

setup_file() {
	export VI_HOME=$BATS_FILE_TMPDIR/home
	mkdir -p "$VI_HOME"
	traversable "$VI_HOME"
	vi -q template build tiny
}

setup() {
	need_hv_qemu
	name=gq-$$-$BATS_TEST_NUMBER
}

teardown() {
	for vm in $(vi list --json 2>/dev/null | jq -r '.vms[].name'); do
		vi -q destroy --force "$vm" || true
	done
}

# Starts NAME and waits until its SSH server lets vi in.
start_ready() {
	vi -q start "$1"
	for _ in $(seq 180); do
		vi exec "$1" -- true 2>/dev/null && return 0
		sleep 1
	done
	echo "VM '$1' did not answer over SSH"
	return 1
}

# The guest's root file system size in KiB, as df inside it says.
root_kib() { vi exec "$1" -- df -k / | awk 'NR == 2 { print $2 }'; }

@test "a stopped machine's disk grows, and at its next boot the guest's root file system fills it" {
	vi -q create --hv qemu --template tiny --wait-ready "$name"
	before=$(root_kib "$name")
	[ "$before" -gt 0 ]
	vi -q stop "$name"
	run -0 vi grow "$name" --disk +64M
	[[ $output == *"  disk vda  64M -> 128M"* ]]
	[[ $output == *"file system: partition vda1 grown; its file system grows at the next boot"* ]]
	disk=$(vi show --json "$name" | jq -r '.vm.disks[0].path')
	qemu-img check -q "$disk"
	start_ready "$name"
	after=$(root_kib "$name")
	echo "root: $before KiB before, $after KiB after"
	[ "$after" -gt $((before + 50000)) ]
	tr -d '\r' <"$VI_HOME/vms/$name/run/console.log" | grep -q "vi: seed: root file system on /dev/vda1 grown to"
	# A boot with nothing to grow says nothing of it.
	vi -q stop "$name"
	start_ready "$name"
	! tr -d '\r' <"$VI_HOME/vms/$name/run/console.log" | grep -q "root file system"
}
