#!/usr/bin/env bats
# The layer store: a store written by the previous release, whose frozen
# layers lived beside the VMs' overlays (and, once their VM was destroyed,
# under images/layers/<uuid>/), is moved to images/layers/<id>.qcow2 on first
# use, and everything keeps its data.

load lib/common

setup() {
	common_setup
	use_fixture_plugins
	cd "$BATS_TEST_TMPDIR"
	golden_image
	old_store
}

byte_at() { qemu-io -c "read -v $2 1" "$1" | sed -n 's/^[0-9a-f]*: *\([0-9a-f][0-9a-f]\).*/\1/p'; }
backing() { qemu-img info -U --output=json "$1" | jq -r '."backing-filename"'; }

# What the previous release left after `clone src c1`, `clone src mid`,
# writes, `clone mid c2` and `destroy --force mid`: src's frozen layer in
# its own disks/, c1 reading it by absolute path, mid's frozen layer adopted
# under images/layers/<uuid>/ for c2, and no index.
old_store() {
	local d=$VI_HOME/vms adopted=$VI_HOME/images/layers/0d6f0c1e-2b3a-4c5d-8e9f-a0b1c2d3e4f5
	mkdir -p "$d/src/disks" "$d/c1/disks" "$d/c2/disks" "$adopted" "$d/.locks" "$d/.staging"
	qemu-img create -q -f qcow2 -b "$PWD/golden.qcow2" -F qcow2 "$d/src/disks/golden.0.qcow2"
	qemu-io -c 'write -P 0x22 0 64k' "$d/src/disks/golden.0.qcow2" >/dev/null
	(cd "$d/src/disks" && qemu-img create -q -f qcow2 -b golden.0.qcow2 -F qcow2 golden.qcow2)
	qemu-io -c 'write -P 0x33 0 64k' "$d/src/disks/golden.qcow2" >/dev/null
	qemu-img create -q -f qcow2 -b "$d/src/disks/golden.0.qcow2" -F qcow2 "$d/c1/disks/golden.qcow2"
	qemu-img create -q -f qcow2 -b "$d/src/disks/golden.0.qcow2" -F qcow2 "$adopted/golden.0.qcow2"
	qemu-io -c 'write -P 0x44 64k 64k' "$adopted/golden.0.qcow2" >/dev/null
	qemu-img create -q -f qcow2 -b "$adopted/golden.0.qcow2" -F qcow2 "$d/c2/disks/golden.qcow2"
	chmod 444 "$d/src/disks/golden.0.qcow2" "$adopted/golden.0.qcow2"
	for vm in src c1 c2; do
		define_vm $vm "kernel: $PWD/golden.qcow2" "disks:" "- path: disks/golden.qcow2" "  format: qcow2"
		sed -i "s/^uuid: .*/uuid: $(cat /proc/sys/kernel/random/uuid)/" "$d/$vm/vm.yaml"
	done
	rm -f "$VI_HOME/images/layers/index.yaml"
}

@test "an old store is moved to the layer store on first use, every image reading what it read" {
	run -0 vi list
	[ -f "$VI_HOME/images/layers/index.yaml" ]
	# Both old layers have their place, and nothing points at the old names.
	[ "$(ls "$VI_HOME/images/layers" | grep -c '\.qcow2$')" -eq 2 ]
	[ ! -e "$VI_HOME/vms/src/disks/golden.0.qcow2" ]
	[ ! -e "$VI_HOME/images/layers/0d6f0c1e-2b3a-4c5d-8e9f-a0b1c2d3e4f5/golden.0.qcow2" ]
	src_layer=$(vi show --json src | jq -r '.vm.disks[0].layer')
	c2_layer=$(vi show --json c2 | jq -r '.vm.disks[0].layer')
	[ "$(vi show --json c1 | jq -r '.vm.disks[0].layer')" = "$src_layer" ]
	[ "$(backing "$VI_HOME/vms/c1/disks/golden.qcow2")" = "$VI_HOME/images/layers/$src_layer.qcow2" ]
	[ "$(backing "$VI_HOME/images/layers/$c2_layer.qcow2")" = "$VI_HOME/images/layers/$src_layer.qcow2" ]
	grep -q "parent: $src_layer" "$VI_HOME/images/layers/index.yaml"
	for f in "$VI_HOME"/vms/*/disks/*.qcow2 "$VI_HOME"/images/layers/*.qcow2; do
		run -0 qemu-img check "$f"
	done
	[ "$(byte_at "$VI_HOME/vms/src/disks/golden.qcow2" 0)" = 33 ]
	[ "$(byte_at "$VI_HOME/vms/c1/disks/golden.qcow2" 0)" = 22 ]
	[ "$(byte_at "$VI_HOME/vms/c2/disks/golden.qcow2" 0)" = 22 ]
	[ "$(byte_at "$VI_HOME/vms/c2/disks/golden.qcow2" 65536)" = 44 ]
	[ "$(byte_at "$VI_HOME/vms/c2/disks/golden.qcow2" 131072)" = 11 ]
}

@test "after the move the old store's VMs start and its clones outlive their source" {
	run -0 vi start c1
	run -0 vi stop c1
	run -0 vi destroy src
	[ "$(byte_at "$VI_HOME/vms/c1/disks/golden.qcow2" 0)" = 22 ]
	[ "$(byte_at "$VI_HOME/vms/c2/disks/golden.qcow2" 65536)" = 44 ]
	run -0 vi destroy c1
	run -0 vi destroy c2
	[ "$(ls "$VI_HOME/images/layers" | grep -c '\.qcow2$')" -eq 0 ]
}

@test "an image in use during the move keeps its old name until it is free" {
	# qemu-io holds c1's disk as a running VM would.
	qemu-io -c 'sleep 20000' "$VI_HOME/vms/c1/disks/golden.qcow2" &
	local holder=$!
	sleep 1
	kill -0 $holder
	run -0 vi list
	[ "$(backing "$VI_HOME/vms/c1/disks/golden.qcow2")" = "$VI_HOME/vms/src/disks/golden.0.qcow2" ]
	[ -e "$VI_HOME/vms/src/disks/golden.0.qcow2" ]
	run -5 vi destroy src
	[[ $output == "vi: error: layer '"*"' of VM 'src' is still read as '$VI_HOME/vms/src/disks/golden.0.qcow2' by a running VM: stop the VMs cloned from 'src' and try again" ]]
	[ -d "$VI_HOME/vms/src" ]
	kill $holder
	wait $holder || true
	run -0 vi destroy src
	src_layer=$(vi show --json c1 | jq -r '.vm.disks[0].layer')
	[ "$(backing "$VI_HOME/vms/c1/disks/golden.qcow2")" = "$VI_HOME/images/layers/$src_layer.qcow2" ]
	run -0 qemu-img check "$VI_HOME/vms/c1/disks/golden.qcow2"
	[ "$(byte_at "$VI_HOME/vms/c1/disks/golden.qcow2" 0)" = 22 ]
}
