#!/usr/bin/env bats
# The main job: machines from a golden image in seconds, and clones of them,
# on hv-qemu with real boots of the shipped `tiny` template.

load lib/common
load lib/template

setup_file() {
	# One build for the whole file; every VM below is an overlay on it.
	tiny_store
}

setup() {
	need_hv_qemu
	name=ct-$$-$BATS_TEST_NUMBER
}

teardown() {
	for vm in $(vi list --json 2>/dev/null | jq -r '.vms[].name'); do
		vi -q destroy --force "$vm" || true
	done
}

@test "create --template --wait-ready: a ready machine on an overlay of the golden image" {
	run -0 vi create --hv qemu --template tiny --wait-ready "$name"
	[ "$output" = "created VM '$name' on qemu: 1 vCPU, 512M, from template 'tiny', running" ]
	run -0 vi show --json "$name"
	[ "$(jq -r .vm.template <<<"$output")" = tiny ]
	[ "$(jq -r .vm.state <<<"$output")" = running ]
	local disk digest
	disk=$(jq -r '.vm.disks[0].path' <<<"$output")
	digest=$(jq -r .vm.template_digest <<<"$output")
	[ "$(qemu-img info -U --output=json "$disk" | jq -r '."backing-filename"')" = "$VI_HOME/images/$digest/disk.qcow2" ]
	grep -q "login:" "$VI_HOME/vms/$name/run/console.log"
	# The guest was told its identity on the kernel command line.
	run -0 guest_sh "$name" 'cat /proc/cmdline'
	[[ $output == *"vi.hostname=$name vi.machine_id=$(vi show --json "$name" | jq -r .vm.machine_id)"* ]]
	run -0 vi stop --force "$name"
	run -0 qemu-img check "$disk"
}

@test "clones of a template machine boot with their own identity" {
	vi -q create --hv qemu --template tiny "$name"
	run -0 vi clone --count 2 --start "$name" "$name-c"
	[[ $output == "cloned '$name' to '$name-c-1' .. '$name-c-2' (2 linked clones, "* ]]
	a=$(vi show --json "$name-c-1") b=$(vi show --json "$name-c-2")
	for f in uuid machine_id hostname; do
		[ "$(jq -r .vm.$f <<<"$a")" != "$(jq -r .vm.$f <<<"$b")" ]
	done
	[ "$(jq -r .vm.template <<<"$b")" = tiny ]
	for c in "$name-c-1" "$name-c-2"; do
		wait_console "$c" "$c login:"
		# The image's identity hook took what vi handed over.
		grep -q "^vi: this is $c, machine ID $(vi show --json "$c" | jq -r .vm.machine_id)" \
			"$VI_HOME/vms/$c/run/console.log"
		run -0 guest_sh "$c" 'cat /etc/hostname /etc/machine-id'
		[[ $output == *"$c"*"$(vi show --json "$c" | jq -r .vm.machine_id)"* ]]
	done
}

@test "a running machine clones without stopping: the clone has its data, later writes stay apart" {
	vi -q create --hv qemu --template tiny --wait-ready "$name"
	run -0 guest_sh "$name" 'echo before >/root/mark; sync'
	run -0 vi clone --start "$name" "$name-c"
	[[ $output == "cloned '$name' to '$name-c' (linked, "* ]]
	[ "$(vi show --json "$name" | jq -r .vm.state)" = running ]
	run -0 guest_sh "$name" 'echo after >/root/mark; sync; echo "source says $(cat /root/mark)"'
	[[ $output == *"source says after"* ]]
	wait_console "$name-c" "$name-c login:"
	run -0 guest_sh "$name-c" 'echo "clone says $(cat /root/mark) on $(hostname)"'
	[[ $output == *"clone says before on $name-c"* ]]
	# The source moved onto a new overlay on what it held at the clone.
	local src clone layer
	src=$(vi show --json "$name" | jq -r '.vm.disks[0].path')
	clone=$(vi show --json "$name-c" | jq -r '.vm.disks[0].path')
	layer=$(qemu-img info -U --output=json "$src" | jq -r '."full-backing-filename"')
	[ "$(qemu-img info -U --output=json "$clone" | jq -r '."full-backing-filename"')" = "$layer" ]
	[ "$layer" != "$src" ]
	[ "$layer" != "$clone" ]
	[[ $layer == "$VI_HOME/images/layers/"*.qcow2 ]]
	vi -q stop --force "$name"
	vi -q stop --force "$name-c"
	for f in "$src" "$clone" "$layer"; do
		run -0 qemu-img check "$f"
	done
	# The clone outlives its source: the layer stays while it reads it.
	run -0 vi destroy "$name"
	run -0 qemu-img check "$clone"
	[ -f "$layer" ]
}

@test "--rm with a command: the command runs against the ready machine, which then goes" {
	run -7 vi create --hv qemu --template tiny --rm --wait-ready "$name" -- \
		sh -c 'vi show --json "$VI_VM" | jq -r .vm.state; exit 7'
	[[ $output == *"running"* ]]
	run -3 vi show "$name"
	run virsh -q dominfo "$name"
	[ "$status" -ne 0 ]
	[ ! -e "$VI_HOME/vms/$name" ]
}

@test "--rm removes the machine when its start fails" {
	run -1 vi create --hv qemu --template tiny --rm --wait-ready --timeout 1 --connect 'qemu+unix:///system?socket=/nonexistent' "$name"
	[ ! -e "$VI_HOME/vms/$name" ]
}

@test "--wait-ready times out with exit 6 when the marker never comes" {
	run -6 vi create --hv qemu --template tiny --wait-ready --timeout 1 "$name"
	[ "$output" = "vi: error: VM '$name' was not ready within 1 s (no 'vi-guest-ready' on its console)" ]
	[ -d "$VI_HOME/vms/$name" ]
}

@test "--disk-size grows the machine's disk, not the golden image" {
	run -0 vi create --hv qemu --template tiny --disk-size 1G "$name"
	disk=$(vi show --json "$name" | jq -r '.vm.disks[0].path')
	[ "$(qemu-img info --output=json "$disk" | jq -r '."virtual-size"')" = 1073741824 ]
	run -0 qemu-img check "$disk"
	run -2 vi create --hv qemu --template tiny --disk-size 1M "$name-small"
	[ "$output" = "vi: error: --disk-size is below the template's 64M" ]
	[ ! -e "$VI_HOME/vms/$name-small" ]
}

@test "bad templates and parameters: one clear error each, nothing left" {
	run -3 vi create --hv qemu --template nosuch "$name"
	[[ $output == "vi: error: "*"nosuch"* ]]
	[ "${#lines[@]}" -eq 1 ]
	run -2 vi create --hv qemu --template tiny --set hostnme=x "$name"
	[[ $output == "vi: error: "*"hostnme"*"did you mean 'hostname'"* ]]
	run -2 vi create --hv qemu --template tiny --set nonsense "$name"
	[[ $output == "vi: error: "*"nonsense"* ]]
	run -2 vi create --hv qemu --set hostname=x --kernel /boot/vmlinuz "$name"
	[ "$output" = "vi: error: --set needs --template" ]
	run -2 vi create --hv qemu --template tiny "$name" extra
	[ "$output" = "vi: error: unexpected argument 'extra' (a command goes after --)" ]
	run -2 vi create --hv qemu --template tiny "$name" -- true
	[ "$output" = "vi: error: a command after -- needs --start or --wait-ready" ]
	[ -z "$(ls "$VI_HOME/vms")" ]
}
