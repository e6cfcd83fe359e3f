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
		! log g1 | grep -q "stamps: start" || false
		! log g1 | grep -q CORRUPT || false
		k=$(first_gen g1)
		# It goes on from where the snapshot caught it, not from the beginning.
		[ "$k" -gt "$before" ]
		[ "$k" -le $((after + 1)) ]
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
	[ "$k" -gt "$after" ]
	[ "$k" -le $((s2_at + 1)) ]
	! log g1 | grep -q "stamps: start" || false
	! log g1 | grep -q CORRUPT || false
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
	! log g3 | grep -q CORRUPT || false
	! log g3 | grep -q "stamps: start" || false
}

vmm_pid() { cat "$VI_HOME/vms/$1/run/pid"; }

@test "checkout of a running guest keeps its VMM process; of a stopped one starts one" {
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start g4
	wait_console g4 "stamps: gen 2 ok"
	vi -q snapshot create g4 s1
	at=$(last_gen g4)
	pid=$(vmm_pid g4)
	run -0 vi snapshot checkout --discard g4 s1
	# The same process took the snapshot's guest over its own.
	[ "$(vmm_pid g4)" = "$pid" ]
	wait_gen g4 $((at + 3))
	[ "$(first_gen g4)" -le $((at + 1)) ]
	! log g4 | grep -q "stamps: start" || false
	! log g4 | grep -q CORRUPT || false
	vi -q stop --force g4
	run -0 vi snapshot checkout --discard g4 s1
	[ "$output" = "VM 'g4' is at snapshot 's1', running" ]
	[ "$(vmm_pid g4)" != "$pid" ]
	wait_gen g4 $((at + 3))
	! log g4 | grep -q "stamps: start" || false
}

@test "a snapshot's memory changed since it was written is read and checked in full: a flipped bit in a page is refused" {
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start g5
	wait_console g5 "stamps: gen 2 ok"
	vi -q snapshot create g5 s1
	state=$VI_HOME/vms/g5/snapshots/s1/memory.state
	# A bit in the middle of the file: page data of the working set.
	python3 - "$state" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    at = os.path.getsize(sys.argv[1]) // 2
    f.seek(at)
    b = f.read(1)
    f.seek(at)
    f.write(bytes([b[0] ^ 0x01]))
PY
	pid=$(vmm_pid g5)
	run -2 vi snapshot checkout --discard g5 s1
	[ "${#lines[@]}" = 1 ]
	[[ $output =~ section\ \'memory\'\ at\ 0x[0-9a-f]+\ of\ the\ state\ fails\ its\ checksum$ ]]
}

@test "a running VMM whose forwards differ from the snapshot's is replaced by a fresh one" {
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic user --start g6
	wait_console g6 "stamps: gen 2 ok"
	vi -q snapshot create g6 s1
	at=$(last_gen g6)
	p=$(free_port)
	vi -q forward add g6 "$p:8080"
	pid=$(vmm_pid g6)
	run -0 vi snapshot checkout --discard g6 s1
	[ "$(vmm_pid g6)" != "$pid" ]
	[ -z "$(vi forward list --json g6 | jq -r ".forwards[] | select(.host_port == $p)")" ]
	wait_gen g6 $((at + 3))
	! log g6 | grep -q "stamps: start" || false
	! log g6 | grep -q CORRUPT || false
}

@test "checkout in place moves a running guest's disks onto the snapshot's, and the images stay whole" {
	qemu-img create -q -f qcow2 data.qcow2 64M
	qemu-img create -q -f raw ro.img 1M
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none \
		--disk data.qcow2 --disk ro.img,ro,format=raw --start g7
	wait_console g7 "stamps: gen 2 ok"
	vi -q snapshot create g7 s1
	vi -q snapshot create g7 s2
	pid=$(vmm_pid g7)
	disk=$(vi show --json g7 | jq -r '.vm.disks[0].path')
	before=$(stat -c %i "$disk")
	run -0 vi snapshot checkout g7 s1
	[ "$(vmm_pid g7)" = "$pid" ]
	disk=$(vi show --json g7 | jq -r '.vm.disks[0].path')
	after=$(stat -c %i "$disk")
	[ "$after" != "$before" ]
	# The VMM has the new overlay open, and no longer the one it replaced.
	open=$(stat -L -c %i /proc/"$pid"/fd/* 2>/dev/null)
	grep -qx "$after" <<<"$open"
	! grep -qx "$before" <<<"$open" || false
	run -0 vi snapshot checkout --discard g7 s2
	[ "$(vmm_pid g7)" = "$pid" ]
	! log g7 | grep -q "stamps: start" || false
	vi -q stop --force g7
	for f in "$VI_HOME"/vms/g7/disks/* "$VI_HOME"/images/layers/*.qcow2; do
		[ -e "$f" ] || continue
		qemu-img check -q "$f"
	done
}
