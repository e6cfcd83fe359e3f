#!/usr/bin/env bats
# vi clone: linked and full copies with their own identity, and vi destroy
# refusing to pull layers from under clones.

load lib/common

setup() {
	common_setup
	use_fixture_plugins
	cd "$BATS_TEST_TMPDIR"
	golden_image 10G
	vi -q create --hv fixture --disk "$PWD/golden.qcow2" --nic user src
}

disk() { echo "$VI_HOME/vms/$1/disks/golden.qcow2"; }
# The source's definition and disks, kept to compare after a refused clone.
remember_src() {
	cp "$VI_HOME/vms/src/vm.yaml" before.yaml
	ls "$VI_HOME/vms/src/disks" >before.list
}
src_unchanged() {
	[ ! -e "$VI_HOME/vms/c1" ]
	cmp before.yaml "$VI_HOME/vms/src/vm.yaml"
	ls "$VI_HOME/vms/src/disks" | cmp before.list -
}
# The references the layer index records for layer $1, sorted, on one line.
yq_refs() {
	awk -v id="  $1:" '$0 == id { on = 1; next } on && /^  [^ ]/ { on = 0 } on && /^ *- / { print $2 }' \
		"$VI_HOME/images/layers/index.yaml" | sort | tr '\n' ' ' | sed 's/ $//'
}
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
	# The frozen layer is in the layer store, read-only, and the VM says so.
	layer=$(vi show --json mid | jq -r '.vm.disks[0].layer')
	[ "$(stat -c %a "$VI_HOME/images/layers/$layer.qcow2")" = 440 ]
	[ "$(qemu-img info --output=json "$(disk c2)" | jq -r '."backing-filename"')" = "$VI_HOME/images/layers/$layer.qcow2" ]
}

@test "the layer index records each layer's parent and who reads it; the last reader takes it along" {
	vi -q clone src mid
	qemu-io -c 'write -P 0x22 0 64k' "$(disk mid)" >/dev/null
	vi -q clone --count 2 mid c
	layer=$(vi show --json mid | jq -r '.vm.disks[0].layer')
	[ "$(vi show --json c-1 | jq -r '.vm.disks[0].layer')" = "$layer" ]
	index=$VI_HOME/images/layers/index.yaml
	[ "$(yq_refs "$layer")" = "vm:c-1 vm:c-2 vm:mid" ]
	# mid's first overlay sat on nothing of the store's: the golden image is its backing.
	grep -q "backing: $PWD/golden.qcow2" "$index"
	vi -q destroy mid
	vi -q destroy c-1
	[ -f "$VI_HOME/images/layers/$layer.qcow2" ]
	[ "$(byte_at "$(disk c-2)" 0)" = 22 ]
	vi -q destroy c-2
	[ ! -e "$VI_HOME/images/layers/$layer.qcow2" ]
	! grep -q "$layer" "$index" || false
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

@test "destroying a VM its clones read leaves them their data" {
	vi -q clone src mid
	qemu-io -c 'write -P 0x22 0 64k' "$(disk mid)" >/dev/null
	vi -q clone --count 2 mid c
	run -0 vi destroy mid
	[ ! -d "$VI_HOME/vms/mid" ]
	for vm in c-1 c-2; do
		run -0 qemu-img check "$(disk $vm)"
		[ "$(byte_at "$(disk $vm)" 0)" = 22 ]
		[ "$(byte_at "$(disk $vm)" 65536)" = 11 ]
	done
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
	sed -i 's/^hv: fixture/hv: bare/' "$VI_HOME/vms/src/vm.yaml"
	mkdir -p "$VI_HOME/vms/src/run" && echo running >"$VI_HOME/vms/src/run/fixture-state"
	remember_src
	run -4 vi clone src c1
	[ "$output" = "vi: error: cannot clone 'src' while it runs: backend 'bare' does not support moving a running VM's disks onto new overlays" ]
	src_unchanged
}

@test "a running source is cloned live: its disks move onto new overlays, the old ones become the layer" {
	echo running >"$VI_HOME/vms/src/run/fixture-state"
	run -0 vi clone src c1
	# The backend was asked once, with an overlay backed by the disk in use.
	[ "$(wc -l <"$VI_HOME/vms/src/run/fixture-disks")" -eq 1 ]
	overlay=$(cat "$VI_HOME/vms/src/run/fixture-disks")
	[ -f "$overlay" ]
	[ "$(vi show --json src | jq -r '.vm.state')" = running ]
	run -0 qemu-img check "$overlay"
	run -0 qemu-img check "$(disk c1)"
	[ "$(qemu-img info --output=json "$(disk c1)" | jq -r '."backing-filename"')" = "$PWD/golden.qcow2" ]
	[ "$(byte_at "$(disk c1)" 0)" = 11 ]
}

@test "a live move the backend refuses: exit 1, no clone, the source's definition and disks unchanged" {
	echo running >"$VI_HOME/vms/src/run/fixture-state"
	echo switch_disks >"$VI_HOME/vms/src/run/fixture-fail"
	remember_src
	run -1 vi clone src c1
	[ "$output" = "vi: error: cannot clone 'src' while it runs: fixture was told to fail switch_disks" ]
	src_unchanged
}

@test "--network moves the clones' NICs to another network, --label changes their labels" {
	vi -q create --hv fixture --disk "$PWD/golden.qcow2" --nic bridge:br-a --nic user \
		--label env=a --label tier=db two
	run -0 vi clone --network br-a=br-b --label env=b --label tier- two c2
	run -0 vi show --json c2
	[ "$(jq -r '[.vm.nics[] | "\(.mode):\(.source)"] | join(",")' <<<"$output")" = "bridge:br-b,user:null" ]
	[ "$(jq -c .vm.labels <<<"$output")" = '{"env":"b"}' ]
	# The source keeps its own.
	run -0 vi show --json two
	[ "$(jq -r '.vm.nics[0].source' <<<"$output")" = br-a ]
	[ "$(jq -c .vm.labels <<<"$output")" = '{"env":"a","tier":"db"}' ]
	run -2 vi clone --network br-a two c3
	[ "$output" = "vi: error: --network takes FROM=TO, not 'br-a'" ]
	run -2 vi clone --label 'bad key=x' two c3
	[[ "$output" == "vi: error: invalid label 'bad key=x'"* ]]
	[ ! -e "$VI_HOME/vms/c3" ]
}
