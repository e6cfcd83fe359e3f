#!/usr/bin/env bats
# vi clone: linked and full copies with their own identity, and vi destroy
# refusing to pull layers from under clones.

load lib/common

setup() {
	common_setup
	use_fixture_plugins
	cd "$BATS_TEST_TMPDIR"
	qemu-img create -q -f qcow2 golden.qcow2 10G
	qemu-io -c 'write -P 0x11 0 1M' golden.qcow2 >/dev/null
	vi -q create --hv fixture --disk "$PWD/golden.qcow2" --nic user src
}

disk() { echo "$VI_HOME/vms/$1/disks/golden.qcow2"; }
byte_at() { qemu-io -c "read -v $2 1" "$1" | sed -n 's/^[0-9a-f]*: *\([0-9a-f][0-9a-f]\).*/\1/p'; }

@test "a linked clone is an overlay, with a new identity" {
	run -0 vi clone src c1
	[[ $output =~ ^cloned\ \'src\'\ to\ \'c1\'\ \(linked,\ [0-9]+\ ms\)$ ]]
	run -0 qemu-img check "$(disk c1)"
	[ "$(qemu-img info --output=json "$(disk c1)" | jq -r '."backing-filename"')" = "$PWD/golden.qcow2" ]
	[ "$(stat -c %s "$(disk c1)")" -lt 1048576 ]
	a=$(vi show --json src) b=$(vi show --json c1)
	for f in uuid machine_id hostname; do
		[ "$(jq -r .vm.$f <<<"$a")" != "$(jq -r .vm.$f <<<"$b")" ]
	done
	[ "$(jq -r .vm.hostname <<<"$b")" = c1 ]
	[ "$(jq -r '.vm.nics[0].mac' <<<"$a")" != "$(jq -r '.vm.nics[0].mac' <<<"$b")" ]
	[ "$(jq -r .vm.cpus <<<"$a")" = "$(jq -r .vm.cpus <<<"$b")" ]
}

@test "the source's data at clone time is what the clone sees; later writes stay apart" {
	vi -q clone src mid
	qemu-io -c 'write -P 0x22 0 64k' "$(disk mid)" >/dev/null
	vi -q clone mid c1
	qemu-io -c 'write -P 0x33 0 64k' "$(disk mid)" >/dev/null
	qemu-io -c 'write -P 0x44 0 64k' "$(disk c1)" >/dev/null
	[ "$(byte_at "$(disk mid)" 0)" = 33 ]
	[ "$(byte_at "$(disk c1)" 0)" = 44 ]
	vi -q clone mid c2
	[ "$(byte_at "$(disk c2)" 0)" = 33 ]
	[ "$(byte_at "$(disk c2)" 65536)" = 11 ]
	for vm in mid c1 c2; do run -0 qemu-img check "$(disk $vm)"; done
	# The frozen layer is read-only.
	[ "$(stat -c %a "$VI_HOME/vms/mid/disks/golden.0.qcow2")" = 444 ]
}

@test "--count makes NEW-1..NEW-N sharing one layer" {
	run -0 vi clone --count 5 src ci
	[[ $output == "cloned 'src' to 'ci-1' .. 'ci-5' (5 linked clones, "*" ms)" ]]
	run -0 vi list --json
	[ "$(jq -r '[.vms[].name] | join(",")' <<<"$output")" = "ci-1,ci-2,ci-3,ci-4,ci-5,src" ]
	[ "$(for i in 1 2 3 4 5; do vi show --json ci-$i | jq -r .vm.uuid; done | sort -u | wc -l)" = 5 ]
}

@test "--full copies into a standalone image" {
	vi -q clone src mid
	qemu-io -c 'write -P 0x22 0 64k' "$(disk mid)" >/dev/null
	run -0 vi clone --full mid f1
	[[ $output == "cloned 'mid' to 'f1' (full copy, "* ]]
	[ "$(qemu-img info --output=json "$(disk f1)" | jq -r '."backing-filename" // "none"')" = none ]
	run -0 qemu-img check "$(disk f1)"
	[ "$(byte_at "$(disk f1)" 0)" = 22 ]
	[ "$(byte_at "$(disk f1)" 65536)" = 11 ]
	# A full clone depends on nothing: its source can go.
	run -0 vi destroy mid
}

@test "clone --json" {
	run -0 vi clone --json --count 2 src j
	[ "$(jq -r .linked <<<"$output")" = true ]
	[ "$(jq -r '.clones | length' <<<"$output")" = 2 ]
	[ "$(jq -r '.clones[1].name' <<<"$output")" = j-2 ]
}

@test "destroy refuses while clones read the VM's disks, and says which" {
	vi -q clone src mid
	qemu-io -c 'write -P 0x22 0 64k' "$(disk mid)" >/dev/null
	vi -q clone --count 2 mid c
	run -5 vi destroy mid
	[ "$output" = "vi: error: VM 'mid' has clones that read its disks: 'c-1', 'c-2' (destroy them first, or use --force to keep their data and destroy it)" ]
	[ -d "$VI_HOME/vms/mid" ]
}

@test "destroy --force keeps the clones' data" {
	vi -q clone src mid
	qemu-io -c 'write -P 0x22 0 64k' "$(disk mid)" >/dev/null
	vi -q clone mid c1
	run -0 vi destroy --force mid
	[ ! -e "$VI_HOME/vms/mid" ]
	run -0 qemu-img check "$(disk c1)"
	[ "$(byte_at "$(disk c1)" 0)" = 22 ]
	[[ $(qemu-img info --output=json "$(disk c1)" | jq -r '."backing-filename"') == "$VI_HOME/images/layers/"* ]]
}

@test "bad clones: one clear error each, nothing made" {
	run -3 vi clone nosuch c1
	[ "$output" = "vi: error: no VM named 'nosuch'" ]
	run -5 vi clone src src
	[ "$output" = "vi: error: VM 'src' already exists" ]
	vi -q clone src taken-2
	run -5 vi clone --count 3 src taken
	[ "$output" = "vi: error: VM 'taken-2' already exists" ]
	run -2 vi clone src 'bad name'
	[ "$output" = "vi: error: invalid VM name 'bad name': only letters, digits, '.', '_' and '-' are allowed" ]
	run -2 vi clone --count 0 src c
	[ "$output" = "vi: error: invalid value for --count '0': must be from 1 to 1000" ]
	[ "$(vi list --json | jq -r '[.vms[].name] | join(",")')" = "src,taken-2" ]
}

@test "a running source on a backend that cannot move its disks live: exit 4, nothing changed" {
	mkdir -p "$VI_HOME/vms/src/run" && echo running >"$VI_HOME/vms/src/run/fixture-state"
	cp "$VI_HOME/vms/src/vm.yaml" before.yaml
	ls "$VI_HOME/vms/src/disks" >before.list
	run -4 vi clone src c1
	[ "$output" = "vi: error: cannot clone 'src' while it runs: backend 'fixture' does not support moving a running VM's disks onto new overlays" ]
	[ ! -e "$VI_HOME/vms/c1" ]
	cmp before.yaml "$VI_HOME/vms/src/vm.yaml"
	ls "$VI_HOME/vms/src/disks" | cmp before.list -
}

@test "destroy --force while a clone's disk is in use: refused, nothing moved" {
	vi -q clone src mid
	qemu-io -c 'write -P 0x22 0 64k' "$(disk mid)" >/dev/null
	vi -q clone mid c1
	# qemu-io holds the clone's disk as a running VM would.
	qemu-io -c 'sleep 20000' "$(disk c1)" &
	local holder=$!
	sleep 1
	kill -0 $holder
	run -5 vi destroy --force mid
	kill $holder
	wait $holder || true
	[ "$output" = "vi: error: cannot keep the layers of 'mid' for the VMs that read them: cannot open '$(disk c1)' for writing: another process is using it" ]
	[ -d "$VI_HOME/vms/mid/disks" ]
	run -0 qemu-img check "$(disk c1)"
	[ "$(byte_at "$(disk c1)" 0)" = 22 ]
}
