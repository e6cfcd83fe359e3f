#!/usr/bin/env bats
# The native VMM (hv-svm or hv-vtx, whichever matches this CPU) through the vi
# verbs, with the test kernels of tests/guest: they carry a real bzImage
# header, so vi loads them exactly as it loads Linux.

load lib/common
load lib/native

# The file of a VM's first disk.
disk_of() {
	local p
	p=$(vi show --json "$1" | jq -r '.vm.disks[0].path')
	case $p in /*) echo "$p" ;; *) echo "$VI_HOME/vms/$1/$p" ;; esac
}

wait_stopped() { # NAME
	for _ in $(seq 100); do
		[ "$(vi show --json "$1" | jq -r .vm.state)" = stopped ] && return 0
		sleep 0.1
	done
	return 1
}

@test "the backend's probe says what backs /dev/kvm" {
	run -0 vi caps --json --hv "$hv"
	if [ -e /sys/module/kvm_intel ] || [ -e /sys/module/kvm_amd ]; then
		[ "$(jq -r '.backends[0].probe' <<<"$output")" = ok ]
		[[ $(jq -r '.backends[0].reason' <<<"$output") != "software KVM"* ]]
	else
		# Usable when named, never picked on its own: guest code is emulated.
		[ "$(jq -r '.backends[0].probe' <<<"$output")" = explicit ]
		[[ $(jq -r '.backends[0].reason' <<<"$output") == "software KVM: guest code is emulated"* ]]
	fi
	other=vtx
	[ "$hv" = vtx ] && other=svm
	run -0 vi caps --json --hv "$other"
	[ "$(jq -r '.backends[0].probe' <<<"$output")" = declined ]
}

@test "the boot protocol: zero page, E820 map and command line reach the guest" {
	run -0 vi create --hv "$hv" --kernel "$guest/bootinfo.bzImage" --memory 64M \
		--cmdline "console=ttyS0 vi.test=yes" --start b1
	wait_console b1 "bootinfo: ok"
	grep -q "cmdline: console=ttyS0 vi.test=yes" "$VI_HOME/vms/b1/run/console.log"
	grep -q "e820: ram 6" "$VI_HOME/vms/b1/run/console.log"
	wait_stopped b1
}

@test "every vCPU comes up through INIT-SIPI-SIPI and reports" {
	vi -q create --hv "$hv" --kernel "$guest/smp.bzImage" --cpus 4 --memory 64M \
		--cmdline cpus=4 --start s1
	wait_console s1 "smp: 4 of 4 cpus up"
	for id in 0 1 2 3; do
		grep -q "smp: cpu $id up" "$VI_HOME/vms/s1/run/console.log"
	done
}

@test "start, list, show, console, stop (graceful), start again, stop --force, destroy" {
	run -0 vi create --hv "$hv" --kernel "$guest/reset.bzImage" --memory 64M \
		--cmdline "reset=wait" --start r1
	[ "$output" = "created VM 'r1' on $hv: 1 vCPU, 64M, running" ]
	wait_console r1 "reset: waiting"
	run -0 vi list
	[[ ${lines[1]} =~ ^r1\ +$hv\ +running\ +1\ +64M ]]
	[ -S "$VI_HOME/vms/r1/run/control.sock" ]
	[ "$(stat -c %a "$VI_HOME/vms/r1/run/control.sock")" = 600 ]
	run -0 vi show --json r1
	[ "$(jq -r .vm.state <<<"$output")" = running ]
	[ "$(jq -r .vm.pid <<<"$output")" -gt 0 ]
	[ "$(jq -r .vm.stats.vcpus <<<"$output")" = 1 ]
	# The console echoes what it is sent, then detaches on the escape key.
	run -0 bash -c "{ printf 'xyz'; sleep 1; printf '\x1d'; } | vi console r1"
	[[ $output == *xyz* ]]
	# Graceful: Ctrl-Alt-Del through the i8042, which this guest answers.
	run -0 vi stop --timeout 20 r1
	[ "$output" = "stopped VM 'r1'" ]
	grep -q "reset: ctrl-alt-del" "$VI_HOME/vms/r1/run/console.log"
	[ ! -e "$VI_HOME/vms/r1/run/control.sock" ]
	[ ! -e "$VI_HOME/vms/r1/run/pid" ]
	run -0 vi start r1
	wait_console r1 "reset: waiting"
	[ "$(grep -c 'reset: waiting' "$VI_HOME/vms/r1/run/console.log")" = 1 ]
	run -0 vi stop --force r1
	run -0 vi destroy r1
	[ ! -e "$VI_HOME/vms/r1" ]
}

@test "a guest that ignores the stop request is stopped hard after --timeout" {
	vi -q create --hv "$hv" --kernel "$guest/reset.bzImage" --memory 64M \
		--cmdline "reset=never" --start n1
	wait_console n1 "reset: never"
	run -0 vi stop --timeout 1 n1
	[ "$(vi show --json n1 | jq -r .vm.state)" = stopped ]
}

@test "a guest that resets or triple-faults ends its VM" {
	vi -q create --hv "$hv" --kernel "$guest/reset.bzImage" --memory 64M \
		--cmdline "reset=triple" --start t1
	wait_console t1 "reset: triple fault"
	wait_stopped t1
	vi -q create --hv "$hv" --kernel "$guest/reset.bzImage" --memory 64M --start i1
	wait_console i1 "reset: i8042"
	wait_stopped i1
}

@test "bad kernels, memory and vCPU counts: one clear error each, nothing left" {
	echo "#!/bin/sh" >"$BATS_TEST_TMPDIR/script"
	head -c 65536 /dev/urandom >"$BATS_TEST_TMPDIR/noise"
	run -3 vi create --hv "$hv" --kernel /nonexistent/bzImage x1
	[ "$output" = "vi: error: kernel '/nonexistent/bzImage': No such file or directory" ]
	run -2 vi create --hv "$hv" --kernel "$BATS_TEST_TMPDIR/script" x1
	[ "$output" = "vi: error: kernel '$BATS_TEST_TMPDIR/script' is too small to be a kernel" ]
	run -2 vi create --hv "$hv" --kernel "$BATS_TEST_TMPDIR/noise" x1
	[ "$output" = "vi: error: kernel '$BATS_TEST_TMPDIR/noise' is neither a bzImage nor an ELF vmlinux" ]
	# A kernel whose header asks for 256 MiB of working space (init_size).
	cp "$guest/bootinfo.bzImage" "$BATS_TEST_TMPDIR/big.bzImage"
	printf '\x00\x00\x00\x10' | dd of="$BATS_TEST_TMPDIR/big.bzImage" bs=1 seek=$((0x260)) \
		conv=notrunc status=none
	run -2 vi create --hv "$hv" --kernel "$BATS_TEST_TMPDIR/big.bzImage" --memory 64M x1
	[ "$output" = "vi: error: memory 64M is below the 257M kernel '$BATS_TEST_TMPDIR/big.bzImage' needs" ]
	run -2 vi create --hv "$hv" --kernel "$guest/hello.bzImage" --cpus 4096 x1
	[[ $output =~ ^vi:\ error:\ 4096\ vCPUs\ requested\;\ this\ host\ allows\ 1\ to\ [0-9]+$ ]]
	[ -z "$(ls "$VI_HOME/vms")" ]
}

@test "disks on virtio-blk: a qcow2 disk the guest writes, a read-only raw one" {
	d=$BATS_TEST_TMPDIR
	qemu-img create -q -f qcow2 "$d/data.qcow2" 16M
	qemu-io -f qcow2 -c 'write -P 0x41 0 64' "$d/data.qcow2" >/dev/null
	printf 'vi read-only disk' >"$d/ro.raw"
	truncate -s 1M "$d/ro.raw"
	run -0 vi create --hv "$hv" --kernel "$guest/devices.bzImage" --memory 64M \
		--disk "$d/data.qcow2" --disk "$d/ro.raw,ro,format=raw" --start k1
	wait_console k1 "devices: "
	wait_stopped k1
	log=$VI_HOME/vms/k1/run/console.log
	grep -q "devices: ok" "$log" || { cat "$log"; false; }
	grep -q "blk0: sector 0 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'" "$log"
	grep -q "blk1: sector 0 'vi read-only disk'" "$log"
	grep -q "blk1: write refused" "$log"
	grep -q "rng: 64 random bytes" "$log"
	grep -q "balloon: idle" "$log"
	# The VM's disk is what vm.yaml names; qemu-img is the judge of what was written.
	disk=$(disk_of k1)
	run -0 qemu-img check "$disk"
	# "written by the guest" and the disk's digit, at sector 1 and at 2 MiB.
	run -0 qemu-io -r -c "read -P 0x77 512 1" -c "read -P 0x30 532 1" \
		-c "read -P 0x30 2097172 1" "$disk"
	[[ $output != *"Pattern verification failed"* ]]
	cmp -s -n 512 "$d/ro.raw" /dev/zero -i 512:0
}

@test "a running VM clones live: its disk moves onto an overlay, the guest keeps writing" {
	d=$BATS_TEST_TMPDIR
	qemu-img create -q -f qcow2 "$d/data.qcow2" 8M
	vi -q create --hv "$hv" --kernel "$guest/disk-writer.bzImage" --memory 64M \
		--disk "$d/data.qcow2" --start w1
	wait_console w1 "disk-writer: 64 writes"
	run -0 vi clone w1 w1c
	[[ $output == "cloned 'w1' to 'w1c' (linked, "* ]]
	[ "$(vi show --json w1 | jq -r .vm.state)" = running ]
	src=$(disk_of w1) clone=$(disk_of w1c)
	layer=$(qemu-img info -U --output=json "$src" | jq -r '."full-backing-filename"')
	[ "$(qemu-img info --output=json "$clone" | jq -r '."full-backing-filename"')" = "$layer" ]
	run -0 bash -c "{ printf 'q'; sleep 1; printf '\x1d'; } | vi console w1"
	wait_console w1 "disk-writer: ok" 60
	wait_stopped w1
	for f in "$src" "$clone" "$layer"; do
		run -0 qemu-img check "$f"
	done
	# Phase 3's pattern went to the source's new overlay, not to the layer.
	run -0 qemu-io -r -c "read -P 0x30 2097152 512" "$src"
	[[ $output != *"Pattern verification failed"* ]]
	run -0 qemu-io -r -c "read -P 0x00 2097152 512" "$clone"
	[[ $output != *"Pattern verification failed"* ]]
}

@test "a disk that is not there is refused at start with its name" {
	qemu-img create -q -f qcow2 "$BATS_TEST_TMPDIR/gone.qcow2" 1M
	vi -q create --hv "$hv" --kernel "$guest/devices.bzImage" --memory 64M \
		--disk "$BATS_TEST_TMPDIR/gone.qcow2" g1
	disk=$(disk_of g1)
	rm "$disk"
	run -3 vi start g1
	[[ $output == *"disk 0: cannot open '$disk': No such file or directory"* ]]
}

@test "vi stop presses the ACPI power button of a guest that armed it" {
	vi -q create --hv "$hv" --kernel "$guest/acpi.bzImage" --cpus 2 --memory 64M --start p1
	wait_console p1 "acpi: waiting for the power button"
	grep -q "acpi: XSDT FACP APIC" "$VI_HOME/vms/p1/run/console.log"
	grep -q "acpi: 2 cpus, sci 9, pm1 0x600/0x604" "$VI_HOME/vms/p1/run/console.log"
	run -0 vi stop --timeout 20 p1
	[ "$output" = "stopped VM 'p1'" ]
	grep -q "acpi: power button" "$VI_HOME/vms/p1/run/console.log"
	! grep -q "FAIL" "$VI_HOME/vms/p1/run/console.log" || false
}

@test "virtio-net on a TAP device in a network namespace: ARP out, reply in" {
	command -v ip >/dev/null || skip "no ip(8)"
	ns=vi-test-$$-$BATS_TEST_NUMBER
	ip netns add "$ns" || skip "cannot make network namespaces here"
	ip -n "$ns" tuntap add dev vitap0 mode tap
	ip -n "$ns" addr add 10.0.2.2/24 dev vitap0
	ip -n "$ns" link set vitap0 up
	run ip netns exec "$ns" env PATH="$PATH" VI_HOME="$VI_HOME" vi create --hv "$hv" \
		--kernel "$guest/devices.bzImage" --memory 64M --nic tap:vitap0 --start n2
	status_create=$status
	[ "$status_create" -eq 0 ] || { echo "$output"; ip netns del "$ns"; false; }
	wait_console n2 "devices: " 30 || { ip netns del "$ns"; false; }
	wait_stopped n2
	ip netns del "$ns"
	log=$VI_HOME/vms/n2/run/console.log
	mac=$(vi show --json n2 | jq -r '.vm.nics[0].mac')
	grep -q "net: mac $mac" "$log"
	grep -q "net: arp reply from 10.0.2.2" "$log"
	grep -q "devices: ok" "$log"
}
