#!/usr/bin/env bats
# vi grow: a stopped VM's definition and disks, bad input that changes
# nothing, the maximum of a running VM, a backend without the method.

load lib/common
load lib/native

setup() {
	native_setup
	kernel=$guest/stamps.bzImage
}

# What a refused request must leave as it was: the definition and the disk.
fingerprint() { # NAME
	sha256sum "$VI_HOME/vms/$1/vm.yaml" | cut -d' ' -f1
	qemu-img info --output=json -U data.qcow2 | jq -r '."virtual-size"'
}

stopped_vm() { # NAME [create options...]
	local name=$1
	shift
	qemu-img create -q -f qcow2 data.qcow2 32M
	qemu-io -f qcow2 -c "write -P 0x5a 0 1M" data.qcow2 >/dev/null
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none \
		--disk "$PWD/data.qcow2" "$@" "$name"
}

@test "vi create leaves room to grow by default, bounded by the host" {
	stopped_vm g1
	run -0 vi show --json g1
	ncpu=$(nproc)
	[ "$ncpu" -gt 32 ] && ncpu=32
	[ "$(jq -r .vm.max_cpus <<<"$output")" = "$ncpu" ]
	[ "$(jq -r .vm.max_memory <<<"$output")" = $((256 << 20)) ]
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --max-cpus 1 \
		--max-memory 64M g2
	[ "$(vi show --json g2 | jq -r '"\(.vm.max_cpus) \(.vm.max_memory)"')" = "1 $((64 << 20))" ]
}

@test "a stopped VM grows in its definition, its disk at once, and raises its maximum" {
	stopped_vm g1 --max-cpus 1 --max-memory 64M
	run -0 vi grow g1 --cpus +1 --memory 128M --disk +16M
	[[ ${lines[0]} =~ ^"VM 'g1' changed in its definition (stopped) in "[0-9]+" ms:"$ ]]
	[ "${lines[1]}" = "  cpus      1 -> 2, at most 1 -> 2" ]
	[ "${lines[2]}" = "  memory    64M -> 128M, at most 64M -> 128M" ]
	[ "${lines[3]}" = "  disk vda  32M -> 48M" ]
	run -0 vi show --json g1
	[ "$(jq -r '"\(.vm.cpus) \(.vm.max_cpus) \(.vm.memory) \(.vm.max_memory)"' <<<"$output")" = \
		"2 2 $((128 << 20)) $((128 << 20))" ]
	[ "$(jq -r '.vm.disks[0].size' <<<"$output")" = $((48 << 20)) ]
	[ "$(qemu-img info --output=json data.qcow2 | jq -r '."virtual-size"')" = $((48 << 20)) ]
	qemu-img check -q data.qcow2
	# The data it held is still there.
	qemu-io -f qcow2 -c "read -P 0x5a 0 1M" data.qcow2 | grep -q "read 1048576/1048576"
	# And it boots with what it was given.
	vi -q start g1
	wait_console g1 "stamps: gen 1 ok"
	[ "$(vi show --json g1 | jq -r .vm.cpus)" = 2 ]
}

@test "sizes: relative and absolute, whole sectors, JSON, and a second disk by name" {
	stopped_vm g1
	qemu-img create -q -f raw second.raw 1M
	vi -q destroy g1
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none \
		--disk "$PWD/data.qcow2" --disk "$PWD/second.raw,format=raw" g1
	run -0 vi grow --json g1 --disk vdb:2000001 --memory -16M
	[ "$(jq -r '.disks[0] | "\(.disk) \(.from) \(.to)"' <<<"$output")" = "vdb 1048576 2000384" ]
	[ "$(jq -r '"\(.live) \(.memory.from) \(.memory.to)"' <<<"$output")" = "false $((64 << 20)) $((48 << 20))" ]
	run -0 vi grow --json g1 --disk 1:+1M
	[ "$(jq -r '.disks[0].to' <<<"$output")" = $((2000384 + (1 << 20))) ]
	[ "$(stat -c %s second.raw)" = $((2000384 + (1 << 20))) ]
}

@test "bad input: one line, a documented status, and nothing changed" {
	stopped_vm g1
	before=$(fingerprint g1)
	run -2 vi grow g1 --memory 0
	[ "$output" = "vi: error: --memory: a VM needs at least 16M, not 0" ]
	run -2 vi grow g1 --memory 12Q
	[ "$output" = "vi: error: invalid --memory '12Q': expected a size such as 512M or 2G" ]
	run -2 vi grow g1 --cpus 0
	[ "$output" = "vi: error: --cpus: a VM needs at least one vCPU" ]
	run -2 vi grow g1 --cpus two
	[ "$output" = "vi: error: --cpus: 'two' is not a number" ]
	run -2 vi grow g1 --cpus -5
	[ "$output" = "vi: error: --cpus: -5 would leave less than nothing" ]
	run -2 vi grow g1 --disk 16M
	[ "$output" = "vi: error: disk vda of VM 'g1' is 32M: shrinking it to 16M is refused, it would lose data" ]
	run -2 vi grow g1 --disk -1M
	[ "$output" = "vi: error: --disk: -1048576 would leave less than nothing" ] ||
		[[ $output == "vi: error: disk vda of VM 'g1' is 32M: shrinking"* ]]
	run -2 vi grow g1
	[[ $output == "vi: error: nothing to change: give --cpus, --memory"* ]]
	run -3 vi grow g1 --disk vdz:+1M
	[ "$output" = "vi: error: VM 'g1' has no disk 'vdz'" ]
	run -3 vi grow nosuch --cpus 2
	[ "${#lines[@]}" = 1 ]
	run -2 vi grow g1 --cpus 4 --max-cpus 2
	[ "$output" = "vi: error: --cpus 4 is above --max-cpus 2" ]
	run -2 vi grow g1 --cpus 1 --memory 64M --cpu-quota 999999
	[[ $output == "vi: error: --cpu-quota 999999% is more than VM 'g1' can use"* ]]
	# A bad amount after good ones: none of them is applied.
	run -2 vi grow g1 --cpus +1 --memory +64M --disk 1M
	[ "$(fingerprint g1)" = "$before" ]
}

@test "a running VM stops at its maximum: exit 5 naming it and how to raise it" {
	stopped_vm g1 --max-cpus 1 --max-memory 64M
	vi -q start g1
	wait_console g1 "stamps: gen 1 ok"
	before=$(fingerprint g1)
	run -5 vi grow g1 --cpus +1
	[ "$output" = "vi: error: VM 'g1' can have at most 1 vCPUs while it runs (its max_cpus): stop it and run 'vi grow --max-cpus 2 g1'" ]
	run -5 vi grow g1 --memory +64M
	[ "$output" = "vi: error: VM 'g1' can have at most 64M of memory while it runs (its max_memory): stop it and run 'vi grow --max-memory 128M g1'" ]
	run -5 vi grow g1 --max-cpus 4
	[ "$output" = "vi: error: VM 'g1' runs: its maximum of vCPUs changes only while it is stopped" ]
	[ "$(fingerprint g1)" = "$before" ]
	[ "$(vi show --json g1 | jq -r .vm.state)" = running ]
}

@test "--check: one line each, the verdict, nothing changed" {
	stopped_vm g1 --max-cpus 2
	before=$(fingerprint g1)
	run -0 vi grow --check g1 --cpus 2 --disk +1M
	[[ ${lines[0]} == "cpus            ok  1, at most 2 (max_cpus, set at creation)" ]]
	[[ $output == *"vda             ok  32M -> 33M"* ]]
	[[ $output == *"request         ok  can be applied to the definition"* ]]
	run -2 vi grow --check g1 --disk 1M
	[[ ${lines[-1]} == "request         no  disk vda of VM 'g1' is 32M: shrinking it to 1M is refused"* ]]
	run -0 vi grow --check --json g1
	[ "$(jq -r '.ok' <<<"$output")" = true ]
	[ "$(jq -r '.checks[0].check' <<<"$output")" = cpus ]
	[ "$(fingerprint g1)" = "$before" ]
}

@test "a backend without the method: exit 4, nothing changed" {
	use_fixture_plugins
	echo "not a kernel" >vmlinuz
	vi -q create --hv fixture --kernel vmlinuz --max-cpus 4 --start fx
	cp "$VI_HOME/vms/fx/vm.yaml" before.yaml
	run -4 vi grow fx --cpus +1
	[ "$output" = "vi: error: backend 'fixture' does not support changing the number of vCPUs" ]
	run -4 vi grow fx --cpu-quota 50
	[ "$output" = "vi: error: backend 'fixture' does not support CPU quotas" ]
	cmp before.yaml "$VI_HOME/vms/fx/vm.yaml"
}

@test "a running native guest's disk grows live: the guest reads the new capacity and uses it" {
	qemu-img create -q -f qcow2 data.qcow2 32M
	vi -q create --hv "$hv" --kernel "$guest/blk-resize.bzImage" --memory 64M --nic none \
		--disk "$PWD/data.qcow2" --start g1
	wait_console g1 "blk: capacity 65536 sectors"
	run -0 vi grow g1 --disk +1G
	[[ ${lines[0]} =~ ^"VM 'g1' grew live in "[0-9]+" ms:"$ ]]
	[ "${lines[1]}" = "  disk vda  32M -> 1056M" ]
	wait_console g1 "blk: resized to 2162688 sectors"
	wait_console g1 "blk: last sector ok"
	[ "$(vi show --json g1 | jq -r '.vm.disks[0].size')" = $((1056 << 20)) ]
	run -0 vi grow --json g1 --disk 2000000001
	[ "$(jq -r '"\(.live) \(.disks[0].to)"' <<<"$output")" = "true 2000000512" ]
	wait_console g1 "blk: resized to 3906251 sectors"
	run -2 vi grow g1 --disk 1M
	vi -q stop --force g1
	qemu-img check -q data.qcow2
	[ "$(qemu-img info --output=json data.qcow2 | jq -r '."virtual-size"')" = 2000000512 ]
}

@test "a running native guest's memory grows live by virtio-mem, within its maximum" {
	vi -q create --hv "$hv" --kernel "$guest/virtio-mem.bzImage" --memory 64M --max-memory 512M \
		--nic none --start m1
	wait_console m1 "virtio-mem:"
	run -0 vi grow m1 --memory +256M
	[ "${lines[1]:0:28}" = "  memory    64M -> 320M (the" ]
	wait_console m1 "virtio-mem: plugged 256 MiB, verified"
	[ "$(vi show --json m1 | jq -r .vm.memory)" = $((320 << 20)) ]
	run -5 vi grow m1 --memory 1G
	[ "$output" = "vi: error: VM 'm1' can have at most 512M of memory while it runs (its max_memory): stop it and run 'vi grow --max-memory 1G m1'" ]
}

# The cpu controller's cgroup of the VMM with pid $1: its directory.
quota_dir() {
	local mnt
	mnt=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
	[ -n "$mnt" ] && grep -q cpu "$mnt/cgroup.controllers" 2>/dev/null ||
		mnt=$(awk '$3 == "cgroup" && $4 ~ /(^|,)cpu(,|$)/ { print $2; exit }' /proc/mounts)
	echo "$mnt/vi/$2.$1"
}

# The quota a cgroup directory holds, in percent of one CPU ("none" for no limit).
quota_of() {
	if [ -f "$1/cpu.max" ]; then
		read -r q p <"$1/cpu.max"
	else
		q=$(cat "$1/cpu.cfs_quota_us") p=$(cat "$1/cpu.cfs_period_us")
	fi
	case $q in max | -1) echo none ;; *) echo $((q * 100 / p)) ;; esac
}

@test "a CPU quota puts the running VM's process in a cgroup of its own, kept in its definition" {
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --start q1
	wait_console q1 "stamps: gen 1 ok"
	pid=$(cat "$VI_HOME/vms/q1/run/pid")
	run -0 vi grow q1 --cpu-quota 50
	[ "${lines[1]}" = "  cpu quota none -> 50%" ]
	dir=$(quota_dir "$pid" q1)
	[ "$(quota_of "$dir")" = 50 ]
	grep -qx "$pid" "$dir/cgroup.procs"
	[ "$(vi show --json q1 | jq -r .vm.cpu_quota)" = 50 ]
	run -0 vi grow q1 --cpu-quota 0
	[ "$(quota_of "$dir")" = none ]
	vi -q grow q1 --cpu-quota 150
	# The guest goes on under it.
	g=$(sed -n 's/^stamps: gen \([0-9]*\) ok.*/\1/p' "$VI_HOME/vms/q1/run/console.log" | tail -1)
	wait_console q1 "stamps: gen $((g + 1)) ok"
	vi -q stop --force q1
	[ ! -e "$dir" ]
	# It comes back with the VM.
	vi -q start q1
	pid=$(cat "$VI_HOME/vms/q1/run/pid")
	[ "$(quota_of "$(quota_dir "$pid" q1)")" = 150 ]
	run -2 vi grow q1 --cpu-quota 50x
	[ "$output" = "vi: error: --cpu-quota: '50x' is not a number" ]
}

@test "a running native guest gets a vCPU live by ACPI hotplug, and gives it back" {
	vi -q create --hv "$hv" --kernel "$guest/cpu-hotplug.bzImage" --cmdline max_cpus=3 \
		--cpus 1 --max-cpus 3 --memory 64M --nic none --start c1
	wait_console c1 "hotplug: ready for 3 cpus"
	run -0 vi grow c1 --cpus +1
	[ "${lines[1]}" = "  cpus      1 -> 2 (the guest has 2)" ]
	wait_console c1 "hotplug: cpu 1 online"
	wait_console c1 "hotplug: cpu 1 alive 2"
	[ "$(vi show --json c1 | jq -r .vm.cpus)" = 2 ]
	run -5 vi grow c1 --cpus 4
	[ "$output" = "vi: error: VM 'c1' can have at most 3 vCPUs while it runs (its max_cpus): stop it and run 'vi grow --max-cpus 4 c1'" ]
	run -0 vi grow c1 --cpus -1
	wait_console c1 "hotplug: cpu 1 ejected"
	[ "$(vi show --json c1 | jq -r .vm.cpus)" = 1 ]
}

@test "--check reads from a running native guest whether it drives CPU and memory hotplug" {
	vi -q create --hv "$hv" --kernel "$guest/virtio-mem.bzImage" --memory 64M --max-memory 512M \
		--max-cpus 2 --nic none --start m1
	wait_console m1 "virtio-mem: region"
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --max-memory 512M --max-cpus 2 \
		--nic none --start s1
	wait_console s1 "stamps: gen 1 ok"
	run -0 vi grow --check m1
	[[ $output == *"guest           no  CPU hotplug without a driver, memory hotplug driven, balloon "* ]]
	run -0 vi grow --check --json s1
	[ "$(jq -r '.checks[] | select(.check == "guest") | "\(.ok) \(.detail)"' <<<"$output")" = \
		"false CPU hotplug without a driver, memory hotplug without a driver, balloon absent" ] ||
		[[ $(jq -r '.checks[] | select(.check == "guest") | .detail' <<<"$output") == "CPU hotplug without a driver, memory hotplug without a driver, balloon "* ]]
}
