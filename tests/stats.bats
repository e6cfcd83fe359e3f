#!/usr/bin/env bats
# vi stats: the figures of running and stopped native VMs, as a table and as
# JSON, a guest that writes its disk, and names that are not VMs.

load lib/common
load lib/native

@test "a running VM has a cpu.util in 0..100, a stopped one none" {
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start s1
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none s2
	wait_console s1 "stamps: gen 1 ok"
	run -0 vi stats --json
	doc=$output
	[ "$(jq -r '.vi' <<<"$doc")" = 1 ]
	[ "$(jq -r '[.vms[].name] | join(" ")' <<<"$doc")" = "s1 s2" ]
	[ "$(jq -r '.vms[0].state' <<<"$doc")" = running ]
	jq -e '.vms[0]["cpu.util"] | type == "number" and . >= 0 and . <= 100' <<<"$doc"
	[ "$(jq -r '.vms[0] | "\(.cpus) \(.memory) \(.hv)"' <<<"$doc")" = "1 $((64 << 20)) $hv" ]
	jq -e '.vms[0].uptime >= 0' <<<"$doc"
	[ "$(jq -r '.vms[1].state' <<<"$doc")" = stopped ]
	[ "$(jq -r '.vms[1] | [."cpu.util", ."disk.write.bytes", ."mem.used", .uptime] | map(tostring) | join(" ")' <<<"$doc")" = "null null null null" ]
	[ "$(jq -r '.vms[1].cpus' <<<"$doc")" = 1 ]
	# The host: its CPUs, its memory, its load.
	jq -e '.host["cpu.util"] >= 0 and .host["cpu.util"] <= 100' <<<"$doc"
	jq -e '.host["mem.free"] > 0 and .host["mem.free"] <= .host["mem.total"]' <<<"$doc"
	jq -e '.host.load >= 0' <<<"$doc"
}

@test "the table: a host line, then a line per VM named" {
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start s1
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none s2
	run -0 vi stats --interval 0.5 s2 s1
	[[ ${lines[0]} =~ ^"host: cpu "[0-9.]+"%, memory "[0-9.]+[KMGT]" free of "[0-9.]+[KMGT]", load "[0-9.]+$ ]]
	[ "$(echo "${lines[1]}" | tr -s ' ')" = "NAME STATE CPUS CPU% MEM MEM-USED DISK-R DISK-W NET-RX NET-TX UPTIME" ]
	[ "${#lines[@]}" = 4 ]
	[ "$(echo "${lines[2]}" | tr -s ' ')" = "s2 stopped 1 - 64M - - - - - -" ]
	[[ $(echo "${lines[3]}" | tr -s ' ') =~ ^"s1 running 1 "[0-9.]+"% 64M - " ]]
}

@test "a guest that writes its disk: bytes and requests written per second" {
	qemu-img create -q -f qcow2 "$BATS_TEST_TMPDIR/data.qcow2" 8M
	vi -q create --hv "$hv" --kernel "$guest/disk-writer.bzImage" --memory 64M --nic none \
		--disk "$BATS_TEST_TMPDIR/data.qcow2" --start w1
	wait_console w1 "disk-writer: 64 writes"
	run -0 vi stats --json --interval 2 w1
	jq -e '.vms[0]["disk.write.bytes"] > 0 and .vms[0]["disk.write.ops"] > 0' <<<"$output"
	jq -e '.vms[0]["net.rx.bytes"] == 0 and .vms[0]["net.tx.bytes"] == 0' <<<"$output"
}

@test "--watch prints a JSON document per line, frame after frame" {
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start s1
	vi stats --json --watch 0.2 --interval 0.2 s1 >"$BATS_TEST_TMPDIR/out" &
	pid=$!
	for _ in $(seq 100); do
		[ "$(wc -l <"$BATS_TEST_TMPDIR/out")" -ge 3 ] && break
		sleep 0.1
	done
	kill "$pid"
	wait "$pid" || true
	[ "$(wc -l <"$BATS_TEST_TMPDIR/out")" -ge 3 ]
	head -3 "$BATS_TEST_TMPDIR/out" | jq -e -s 'map(.vms[0].name == "s1" and .vi == 1) | all'
}

@test "a name that is not a VM, bad seconds" {
	run -3 vi stats nope
	[ "$output" = "vi: error: no VM named 'nope'" ]
	run -2 vi stats --watch 0
	[ "$output" = "vi: error: invalid watch '0': must be from 0.1 to 86400 seconds" ]
	run -2 vi stats --interval soon
	[ "$output" = "vi: error: invalid interval 'soon': expected seconds such as 2 or 0.5" ]
}

@test "no VMs: the host alone; --json an empty list" {
	run -0 vi stats --interval 0.2
	[ "${#lines[@]}" = 1 ]
	[[ ${lines[0]} == "host: cpu "* ]]
	run -0 vi stats --json --interval 0.2
	[ "$(jq -c .vms <<<"$output")" = "[]" ]
}
