#!/usr/bin/env bats
# The policy engine with hv-qemu: a guest whose QEMU is killed is crashed to
# vi, and a restart policy brings it back; its figures come from libvirt.

load lib/common
load lib/template

setup_file() {
	tiny_store
}

setup() {
	need_hv_qemu
	cd "$BATS_TEST_TMPDIR"
}

teardown() {
	[ -z "${engine:-}" ] || { kill "$engine" 2>/dev/null; wait "$engine" 2>/dev/null || true; }
	for vm in $(vi list --json 2>/dev/null | jq -r '.vms[].name'); do
		vi -q destroy --force "$vm" || true
	done
	rm -rf "$VI_HOME/policies"
}

state_of() { vi show --json "$1" | jq -r .vm.state; }

@test "a QEMU guest killed with -9 is crashed, comes back under a restart policy, and a stopped one stays" {
	name=pq-$$
	vi -q create --hv qemu --template tiny --wait-ready "$name"
	vi -q create --hv qemu --template tiny "$name-off"
	[ "$(state_of "$name")" = running ]
	run -0 vi stats --json "$name"
	[ "$(jq -r '.vms[0].state' <<<"$output")" = running ]
	jq -e '.vms[0]["cpu.util"] >= 0 and .vms[0]["cpu.util"] <= 100' <<<"$output"
	printf 'name: revive\nvms: ["pq-*"]\nwhen: state == crashed\nthen: restart\n' | vi -q policy add -
	pid=$(pgrep -f "qemu-system.*guest=$name,") || pid=$(pgrep -f "qemu-system.*$name")
	kill -9 $pid
	for _ in $(seq 50); do
		[ "$(state_of "$name")" = crashed ] && break
		sleep 0.2
	done
	[ "$(state_of "$name")" = crashed ]
	run -0 vi policy plan --json
	[ "$(jq -r --arg v "$name" '.plan[] | select(.vm == $v) | .decision' <<<"$output")" = fire ]
	[ "$(jq -r --arg v "$name-off" '.plan[] | select(.vm == $v) | .decision' <<<"$output")" = no ]
	vi policy run --interval 2 >engine.out 2>&1 &
	engine=$!
	for _ in $(seq 60); do
		[ "$(state_of "$name")" = running ] && break
		sleep 0.5
	done
	[ "$(state_of "$name")" = running ]
	kill "$engine"
	wait "$engine" || true
	engine=
	[ "$(state_of "$name-off")" = stopped ]
	grep -q "revive $name: restart: ok, crashed, started again (state=crashed)" engine.out
}
