#!/usr/bin/env bats
# The CPU-burning test kernel (cpu-hotplug.bzImage with "burn"), the guest of the
# policy engine's acceptance test: every online vCPU, the hot-added ones too, keeps
# its thread busy, so that the VM's cpu.util stays near the top.

load lib/common
load lib/native

# "TID TICKS" for each thread of VM $1's process: its user and system time.
thread_ticks() { # NAME
	local pid stat
	pid=$(cat "$VI_HOME/vms/$1/run/pid")
	for stat in /proc/"$pid"/task/*/stat; do
		sed 's/^\([0-9]*\) (.*) /\1 /' "$stat" | awk '{ print $1, $13 + $14 }'
	done
}

# Waits until $2 threads of VM $1 have each used a fifth of a second of CPU since
# baseline file $3 was taken (at most 60 s), and no more than $2 have.
wait_busy_threads() { # NAME COUNT BASELINE
	local busy
	for _ in $(seq 300); do
		busy=$(thread_ticks "$1" | awk -v base="$3" '
			BEGIN { while ((getline l < base) > 0) { split(l, f, " "); t[f[1]] = f[2] } }
			$2 - t[$1] >= 20 { n++ } END { print n + 0 }')
		[ "$busy" -ge "$2" ] && break
		sleep 0.2
	done
	echo "busy threads: $busy, want $2"
	[ "$busy" = "$2" ]
}

@test "a burning guest keeps its vCPU busy, and each vCPU grown into it" {
	vi -q create --hv "$hv" --kernel "$guest/cpu-hotplug.bzImage" --cmdline "max_cpus=3 burn" \
		--memory 64M --nic none --cpus 1 --max-cpus 3 hot
	vi -q start hot
	wait_console hot "burn: cpu 0"
	thread_ticks hot >base
	wait_busy_threads hot 1 base

	run -0 vi grow hot --cpus +1
	wait_console hot "hotplug: cpu 1 online"
	wait_console hot "burn: cpu 1"
	thread_ticks hot >base
	wait_busy_threads hot 2 base
	run -0 vi show --json hot
	[ "$(jq -r '"\(.vm.cpus) \(.vm.stats.vcpus)"' <<<"$output")" = "2 2" ]
	before=$(jq -r .vm.stats.cpu_time_ns <<<"$output")

	# To the maximum, and not past it.
	run -0 vi grow hot --cpus +1
	wait_console hot "burn: cpu 2"
	run -5 vi grow hot --cpus +1
	[ "$output" = "vi: error: VM 'hot' can have at most 3 vCPUs while it runs (its max_cpus): stop it and run 'vi grow --max-cpus 4 hot'" ]
	run -0 vi show --json hot
	[ "$(jq -r '"\(.vm.cpus) \(.vm.stats.vcpus)"' <<<"$output")" = "3 3" ]
	[ "$(jq -r .vm.stats.cpu_time_ns <<<"$output")" -gt "$before" ]
	! grep -q FAIL "$VI_HOME/vms/hot/run/console.log" || false
}

@test "without burn the kernel prints no burn lines" {
	vi -q create --hv "$hv" --kernel "$guest/cpu-hotplug.bzImage" --cmdline "max_cpus=2" \
		--memory 64M --nic none --cpus 1 --max-cpus 2 cool
	vi -q start cool
	wait_console cool "hotplug: ready for 2 cpus"
	vi -q grow cool --cpus +1
	wait_console cool "hotplug: cpu 1 online"
	! grep -q "burn:" "$VI_HOME/vms/cool/run/console.log" || false
}
