#!/usr/bin/env bats
# vi snapshot: a VM's snapshots as a DAG, checked out with nothing lost,
# deleted with their data merged, on the fixture backend (which records what
# it is asked to save and restore) and real qcow2 images.

load lib/common

setup() {
	common_setup
	use_fixture_plugins
	cd "$BATS_TEST_TMPDIR"
	golden_image 64M
	touch vmlinuz
	vi -q create --hv fixture --kernel "$PWD/vmlinuz" --disk "$PWD/golden.qcow2" --nic none a
}

# The VM's first disk, as its definition names it now.
disk() { vi show --json "${1:-a}" | jq -r '.vm.disks[0].path'; }
# Writes byte $2 (hex) over 64 KiB at offset $1 of the VM's disk, as a guest would.
put() { qemu-io -c "write -q -P 0x$2 $1 64k" "$(disk)" >/dev/null; }
byte_at() { qemu-io -c "read -v $1 1" "$(disk)" | sed -n 's/^[0-9a-f]*: *\([0-9a-f][0-9a-f]\).*/\1/p'; }
state() { cat "$VI_HOME/vms/a/run/fixture-state" 2>/dev/null || echo stopped; }
set_state() { mkdir -p "$VI_HOME/vms/a/run" && echo "$1" >"$VI_HOME/vms/a/run/fixture-state"; }
# qemu-img check is clean on every image under the store.
all_images_clean() {
	find "$VI_HOME" -name '*.qcow2' | while read -r f; do
		qemu-img check -q "$f" || { echo "not clean: $f"; return 1; }
	done
}

@test "create names a snapshot, list marks the current one, show tells what it holds" {
	run -0 vi snapshot create -m "first one" a base
	[ "$output" = base ]
	run -0 vi snapshot create a
	[[ $output =~ ^s[0-9a-f]{6}$ ]]
	auto=$output
	run -0 vi snapshot list a
	[[ ${lines[0]} =~ NAME\ +PARENT\ +CREATED\ +MEMORY\ +SIZE\ +MESSAGE ]]
	[[ ${lines[1]} =~ ^\ +base\ +-\ +[0-9-]+\ [0-9:]+\ +no\ +[0-9.]+[KMG]?\ +first\ one$ ]]
	[[ ${lines[2]} =~ ^\*\ +$auto\ +base\  ]]
	run -0 vi snapshot list --json a
	[ "$(jq -r .current <<<"$output")" = "$auto" ]
	[ "$(jq -r '.snapshots[0].name + " " + (.snapshots[0].memory|tostring)' <<<"$output")" = "base false" ]
	run -0 vi snapshot show a base
	[[ $output == *"parent:    -"* && $output == *"disks only"* && $output == *"message:   first one"* ]]
	[[ $output == *"disks:     $PWD/golden.qcow2"* ]]
	run -0 vi snapshot show --json a "$auto"
	[ "$(jq -r '.snapshot.parent + " " + (.snapshot.current|tostring)' <<<"$output")" = "base true" ]
	[ "$(jq -r '.snapshot.definition.cpus' <<<"$output")" = 1 ]
	run -0 vi snapshot list --tree a
	[[ ${lines[0]} == "  base  "* && ${lines[1]} == '`-- * '"$auto"* ]]
}

@test "bad input is refused in one line and changes nothing" {
	vi -q snapshot create a one
	cp "$VI_HOME/vms/a/vm.yaml" before.yaml
	run -5 vi snapshot create a one
	[ "$output" = "vi: error: VM 'a' already has a snapshot 'one'" ]
	run -2 vi snapshot create a 'bad/name'
	[ "${#lines[@]}" = 1 ]
	run -3 vi snapshot create nosuch
	[ "$output" = "vi: error: no VM named 'nosuch'" ]
	run -3 vi snapshot checkout a nope
	[ "$output" = "vi: error: VM 'a' has no snapshot 'nope'" ]
	run -3 vi snapshot delete a nope
	[ "$output" = "vi: error: VM 'a' has no snapshot 'nope'" ]
	run -3 vi snapshot show a nope
	cmp before.yaml "$VI_HOME/vms/a/vm.yaml"
	[ "$(vi snapshot list --json a | jq '.snapshots | length')" = 1 ]
}

@test "checkout returns the disks to the snapshot and keeps what it replaced" {
	put 2M aa
	vi -q snapshot create a s1
	put 2M bb
	put 3M cc
	[ "$(byte_at 2M)" = bb ]
	run -0 vi snapshot checkout a s1
	[[ $output =~ kept\ the\ state\ of\ VM\ \'a\'\ before\ the\ checkout\ as\ snapshot\ \'(s[0-9a-f]{6})\' ]]
	saved=${BASH_REMATCH[1]}
	[[ $output == *"VM 'a' is at snapshot 's1', stopped" ]]
	[ "$(byte_at 2M)" = aa ]
	[ "$(byte_at 3M)" = 00 ]
	[ "$(vi snapshot list --json a | jq -r .current)" = s1 ]
	run -0 vi snapshot show a "$saved"
	[[ $output == *"message:   state before checkout of s1 (automatic)"* ]]
	# The newer state is a snapshot like any other.
	vi -q snapshot checkout a "$saved"
	[ "$(byte_at 2M)" = bb ]
	[ "$(byte_at 3M)" = cc ]
	# Back and forth: nothing written since, so nothing more is kept.
	vi -q snapshot checkout a s1
	vi -q snapshot checkout a s1
	[ "$(byte_at 2M)" = aa ]
	[ "$(vi snapshot list --json a | jq '.snapshots | length')" = 2 ]
	run -0 all_images_clean
}

@test "checkout --discard drops the current state" {
	vi -q snapshot create a s1
	put 2M bb
	run -0 vi snapshot checkout --discard a s1
	[ "$output" = "VM 'a' is at snapshot 's1', stopped" ]
	[ "$(byte_at 2M)" = 00 ]
	[ "$(vi snapshot list --json a | jq '.snapshots | length')" = 1 ]
	[ "$(ls "$VI_HOME/vms/a/disks" | wc -l)" = 1 ]
}

@test "a running VM's snapshot holds its memory, taken paused, and checkout resumes it" {
	set_state running
	run -0 vi snapshot create --json a live
	[ "$(jq -r '.snapshot.memory' <<<"$output")" = true ]
	[ "$(jq -r '.snapshot.state' <<<"$output")" = running ]
	[ "$(state)" = running ]
	[ -f "$VI_HOME/vms/a/snapshots/live/memory.state" ]
	# The disks moved while it ran: the fixture saw the switch.
	[ -s "$VI_HOME/vms/a/run/fixture-disks" ]
	set_state paused
	vi -q snapshot create a held
	[ "$(state)" = paused ]
	run -0 vi snapshot create --disk-only --json a disks
	[ "$(jq -r '.snapshot.memory' <<<"$output")" = false ]
	set_state stopped
	run -0 vi snapshot checkout --discard a live
	[ "$output" = "VM 'a' is at snapshot 'live', running" ]
	[ "$(state)" = running ]
	run -0 vi snapshot checkout --json a held
	[ "$(jq -r .state <<<"$output")" = paused ]
	[ "$(jq -r .saved <<<"$output")" != null ]
	[ "$(vi snapshot show --json a "$(jq -r .saved <<<"$output")" | jq -r .snapshot.memory)" = true ]
	vi -q snapshot checkout a disks
	[ "$(state)" = stopped ]
	run -0 all_images_clean
}

@test "a memory save that fails leaves no snapshot and the guest running" {
	set_state running
	echo save >"$VI_HOME/vms/a/run/fixture-fail"
	run -1 vi snapshot create a broken
	[[ $output == "vi: error: cannot save the memory of VM 'a': "* ]]
	[ "${#lines[@]}" = 1 ]
	[ "$(state)" = running ]
	[ "$(vi snapshot list --json a | jq '.snapshots | length')" = 0 ]
	[ -z "$(ls -A "$VI_HOME/vms/a/snapshots")" ]
	rm "$VI_HOME/vms/a/run/fixture-fail"
	run -0 vi snapshot create a broken
}

@test "delete merges a snapshot's data into what reads it, and its children take its parent" {
	# The VM's disk is the user's file until a first snapshot freezes it.
	vi -q snapshot create a base
	put 2M aa
	vi -q snapshot create a s1
	put 3M bb
	vi -q snapshot create a s2
	put 4M cc
	vi -q snapshot create a s3
	layers_before=$(ls "$VI_HOME/images/layers" | grep -c qcow2)
	run -0 vi snapshot delete a s2
	[ "$output" = "deleted snapshot 's2' of VM 'a'" ]
	[ "$(ls "$VI_HOME/images/layers" | grep -c qcow2)" -lt "$layers_before" ]
	[ "$(vi snapshot show --json a s3 | jq -r .snapshot.parent)" = s1 ]
	[ "$(byte_at 2M)" = aa ]
	[ "$(byte_at 3M)" = bb ]
	[ "$(byte_at 4M)" = cc ]
	vi -q snapshot checkout --discard a s3
	[ "$(byte_at 3M)" = bb ]
	vi -q snapshot checkout --discard a s1
	[ "$(byte_at 2M)" = aa ]
	[ "$(byte_at 3M)" = 00 ]
	# Deleting the current one moves the VM's position to its parent.
	vi -q snapshot delete a s1
	[ "$(vi snapshot list --json a | jq -r .current)" = base ]
	[ "$(byte_at 2M)" = aa ]
	run -0 all_images_clean
}

@test "delete is refused while a clone reads the snapshot" {
	vi -q snapshot create a base
	put 2M aa
	vi -q snapshot create a s1
	vi -q clone a c1
	run -5 vi snapshot delete a s1
	[ "$output" = "vi: error: snapshot 's1' of VM 'a' is read by clone 'c1': destroy it first" ]
	[ "$(vi snapshot list --json a | jq '.snapshots | length')" = 2 ]
	vi -q destroy c1
	run -0 vi snapshot delete a s1
}

@test "destroying the VM takes its snapshots and their layers" {
	vi -q snapshot create a base
	put 2M aa
	vi -q snapshot create a s1
	put 2M bb
	vi -q snapshot create a s2
	run -0 vi destroy a
	[ ! -e "$VI_HOME/vms/a" ]
	[ -z "$(ls "$VI_HOME/images/layers" 2>/dev/null | grep qcow2)" ]
}

@test "vi clone VM@SNAP clones a snapshot and leaves the VM as it is" {
	vi -q snapshot create a base
	put 2M aa
	vi -q snapshot create a s1
	put 2M bb
	cp "$VI_HOME/vms/a/vm.yaml" before.yaml
	run -0 vi clone a@s1 c1
	[ "$output" = "cloned 'a@s1' to 'c1' (linked, ${output##*linked, }" ]
	[ "$(byte_at 2M)" = bb ]
	[ "$(qemu-io -c 'read -v 2M 1' "$(disk c1)" | sed -n 's/^[0-9a-f]*: *\([0-9a-f][0-9a-f]\).*/\1/p')" = aa ]
	cmp before.yaml "$VI_HOME/vms/a/vm.yaml"
	[ "$(vi show --json c1 | jq -r .vm.uuid)" != "$(vi show --json a | jq -r .vm.uuid)" ]
	run -5 vi snapshot delete a s1
	[ "$output" = "vi: error: snapshot 's1' of VM 'a' is read by clone 'c1': destroy it first" ]
	run -3 vi clone a@nope c2
	[ "$output" = "vi: error: VM 'a' has no snapshot 'nope'" ]
	[ ! -e "$VI_HOME/vms/c2" ]
}

@test "kill -9 at any instant of create, checkout or delete leaves a whole state" {
	vi -q snapshot create a base
	put 2M aa
	vi -q snapshot create a s1
	set_state running
	for i in $(seq 12); do
		case $((i % 3)) in
		0) vi -q snapshot create a "k$i" & ;;
		1) vi -q snapshot checkout a s1 & ;;
		2)
			victim=$(vi snapshot list --json a |
				jq -r '[.snapshots[].name | select(. != "base" and . != "s1")] | last // "base"')
			vi -q snapshot delete a "$victim" &
			;;
		esac
		pid=$!
		sleep "0.0$((RANDOM % 10))"
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		# Whatever was interrupted, the snapshots read and the next command works.
		vi snapshot list a >/dev/null
		vi snapshot list --json a | jq -r '.snapshots[].name' | while read -r n; do
			vi snapshot show a "$n" >/dev/null
		done
	done
	run -0 all_images_clean
	vi -q snapshot create a after
	vi -q snapshot checkout --discard a s1
	[ "$(state)" = stopped ]
	[ -z "$(ls -A "$VI_HOME/vms/a/snapshots" | grep '^\.')" ]
	run -0 vi start a
}

@test "a backend that cannot save memory refuses a snapshot of a running VM, exit 4, nothing written" {
	vi -q snapshot create a base
	set_state running
	cp "$VI_HOME/vms/a/vm.yaml" before.yaml
	ls -R "$VI_HOME" >before.list
	FIXTURE_NO_SAVE=1 run -4 vi snapshot create a live
	[ "$output" = "vi: error: backend 'fixture' does not support saving VM state: take a disk-only snapshot (--disk-only) or stop VM 'a' first" ]
	cmp before.yaml "$VI_HOME/vms/a/vm.yaml"
	ls -R "$VI_HOME" | cmp before.list -
	[ "$(state)" = running ]
	FIXTURE_NO_SAVE=1 run -0 vi snapshot create --disk-only a disks
	# A snapshot with memory cannot be checked out there either, and nothing changes.
	vi -q snapshot create a live
	set_state stopped
	cp "$VI_HOME/vms/a/vm.yaml" before.yaml
	FIXTURE_NO_SAVE=1 run -4 vi snapshot checkout a live
	[ "$output" = "vi: error: backend 'fixture' does not support restoring VM state: snapshot 'live' holds memory" ]
	cmp before.yaml "$VI_HOME/vms/a/vm.yaml"
}

@test "after create, checkout and delete, every snapshot's disks compare equal to what they held" {
	vi -q snapshot create a base
	put 2M aa
	vi -q snapshot create a s1
	qemu-img convert -O raw "$(disk)" s1.raw
	put 3M bb
	vi -q snapshot create a s2
	qemu-img convert -O raw "$(disk)" s2.raw
	put 4M cc
	vi -q snapshot checkout a s1
	qemu-img compare -q "$(disk)" s1.raw
	vi -q snapshot delete a base
	qemu-img compare -q "$(disk)" s1.raw
	vi -q snapshot checkout --discard a s2
	vi -q snapshot delete a s1
	# s2 as it was taken, and the automatic snapshot checkout made still hold their data.
	qemu-img compare -q "$(disk)" s2.raw
	auto=$(vi snapshot list --json a | jq -r '.snapshots[] | select(.automatic) | .name' | head -1)
	vi -q snapshot checkout --discard a "$auto"
	[ "$(byte_at 4M)" = cc ]
	[ "$(byte_at 3M)" = bb ]
	run -0 all_images_clean
}
