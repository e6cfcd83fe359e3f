#!/usr/bin/env bats
# vi snapshot on the native VMM with a real guest: the stamps test kernel rewrites
# 4 MiB of pages each generation and checks every page held the previous one, so a
# checkout that lost or mixed up memory shows as CORRUPT, and one that rebooted the
# guest as a new "stamps: start".

load lib/common
load lib/native

log() { tr -d "\r" <"$VI_HOME/vms/$1/run/console.log" 2>/dev/null; }
# The last generation the guest printed.
last_gen() { log "$1" | sed -n 's/^stamps: gen \([0-9]*\) ok$/\1/p' | tail -1; }
first_gen() { log "$1" | sed -n 's/^stamps: gen \([0-9]*\) ok$/\1/p' | head -1; }
wait_gen() { # NAME GEN: waits until the guest has printed generation GEN or later
	for _ in $(seq 300); do
		g=$(last_gen "$1")
		[ -n "$g" ] && [ "$g" -ge "$2" ] && return 0
		sleep 0.1
	done
	echo "generation $2 not reached:"
	log "$1" | tail -5
	return 1
}

@test "a running guest's snapshot resumes from its generation, twice, and a newer one after" {
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start g1
	wait_console g1 "stamps: gen 3 ok"
	before=$(last_gen g1)
	run -0 vi snapshot create -m "while it counts" g1 s1
	after=$(last_gen g1)
	[ "$(vi snapshot show --json g1 s1 | jq -r '.snapshot.memory')" = true ]
	[ "$(vi show --json g1 | jq -r .vm.state)" = running ]
	wait_gen g1 $((after + 10))
	for round in 1 2; do
		run -0 vi snapshot checkout --discard g1 s1
		[ "$output" = "VM 'g1' is at snapshot 's1', running" ]
		wait_gen g1 $((after + 5))
		! log g1 | grep -q "stamps: start"
		! log g1 | grep -q CORRUPT
		k=$(first_gen g1)
		# It goes on from where the snapshot caught it, not from the beginning.
		[ "$k" -gt "$before" ] && [ "$k" -le $((after + 1)) ]
	done
	wait_gen g1 $((after + 20))
	vi -q snapshot create g1 s2
	s2_at=$(last_gen g1)
	run -0 vi snapshot checkout g1 s1
	[[ $output == *"as snapshot '"* ]]
	wait_gen g1 $((after + 3))
	run -0 vi snapshot checkout --discard g1 s2
	wait_gen g1 $((s2_at + 3))
	k=$(first_gen g1)
	[ "$k" -gt "$after" ] && [ "$k" -le $((s2_at + 1)) ]
	! log g1 | grep -q "stamps: start"
	! log g1 | grep -q CORRUPT
	vi -q stop --force g1
	for f in "$VI_HOME"/vms/g1/disks/* "$VI_HOME"/images/layers/*.qcow2; do
		[ -e "$f" ] || continue
		qemu-img check -q "$f"
	done
}

@test "a disk-only snapshot of a running guest holds no memory and boots afresh at checkout" {
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start g2
	wait_console g2 "stamps: gen 2 ok"
	vi -q snapshot create --disk-only g2 disks
	[ "$(vi snapshot show --json g2 disks | jq -r '.snapshot.memory')" = false ]
	run -0 vi snapshot checkout --discard g2 disks
	[ "$output" = "VM 'g2' is at snapshot 'disks', stopped" ]
	vi -q start g2
	wait_console g2 "stamps: start"
	wait_console g2 "stamps: gen 2 ok"
	vi -q stop --force g2
}

@test "a state file with a flipped bit is refused, naming the section, and the guest goes on" {
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start g3
	wait_console g3 "stamps: gen 2 ok"
	vi -q snapshot create g3 s1
	vi -q snapshot create g3 s2
	state=$VI_HOME/vms/g3/snapshots/s1/memory.state
	# One bit of the last device section, just before the end marker.
	python3 - "$state" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(-64, 2)
    b = f.read(1)
    f.seek(-64, 2)
    f.write(bytes([b[0] ^ 0x10]))
PY
	run -2 vi snapshot checkout g3 s1
	[ "${#lines[@]}" = 1 ]
	[[ $output =~ ^vi:\ error:\ cannot\ resume\ VM\ \'g3\'\ from\ snapshot\ \'s1\':\ .*section\ \'[a-z0-9-]+\'\ \#[0-9]+\ of\ the\ state\ fails\ its\ checksum$ ]]
	# Back where it was: the same disks and position, running on.
	[ "$(vi show --json g3 | jq -r .vm.state)" = running ]
	[ "$(vi snapshot list --json g3 | jq -r .current)" != s1 ]
	g=$(last_gen g3)
	wait_gen g3 $((g + 3))
	! log g3 | grep -q CORRUPT
	! log g3 | grep -q "stamps: start"
}
