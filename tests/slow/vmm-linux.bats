#!/usr/bin/env bats
# The native VMM boots Debian's stock kernel through vi create/start/stop. The kernel is
# the uncompressed vmlinux inside /boot/vmlinuz-* (entered at its 64-bit entry point):
# under software KVM the bzImage's own decompressor alone takes over ten minutes.
# VI_SLOW_BZIMAGE=1 boots the bzImage as well. VI_SLOW_TIMEOUT (seconds, default 3600)
# bounds each boot.
#
# With VT-x or SVM (kvm_intel, kvm_amd) the kernel must reach the marker that init prints
# from a small initramfs; that takes about a second there. Under software KVM (kvm_pvm,
# which runs guest code in KVM's instruction emulator at ~2 million instructions a second)
# the kernel cannot get that far: the emulator cannot deliver a protected-mode INT3, which
# the kernel's alternatives self-test executes. There the test checks what the kernel
# reports from the boot protocol (our command line and E820 map) and from our ACPI tables
# (it lists them, RSDP at 0xf0000 first), reached after ~110 s of kernel time, about 4
# minutes here; the "# booted" line says how long it took.
#
# The VM has a disk on virtio-blk and the initramfs loads virtio_pci and virtio_blk: with
# VT-x or SVM the kernel must find it as vda over PCI before init's marker.

load ../lib/common

setup() {
	common_setup
	[ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "/dev/kvm is not usable here"
	bzimage=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
	[ -n "$bzimage" ] || skip "no /boot/vmlinuz-* to boot"
	kver=${bzimage#/boot/vmlinuz-}
	hv=svm
	grep -q GenuineIntel /proc/cpuinfo && hv=vtx
	timeout=${VI_SLOW_TIMEOUT:-3600}
	cmdline="console=ttyS0 reboot=k panic=-1 nokaslr"
	hardware=0
	[ -e /sys/module/kvm_intel ] || [ -e /sys/module/kvm_amd ] && hardware=1
	# Software KVM's instruction emulator cannot run xrstor, which the kernel uses
	# for its FPU state when the CPU offers xsave (and KVM offers it regardless).
	[ $hardware = 1 ] || cmdline="$cmdline noxsave"
	"$VI_TOP/tests/lib/mkinitramfs" -o "$BATS_TEST_TMPDIR/initrd.gz" --marker VI-SLOW-BOOT \
		--kernel-version "$kver" --module virtio_pci --module virtio_blk
	qemu-img create -q -f qcow2 "$BATS_TEST_TMPDIR/root.qcow2" 64M
}

teardown() {
	vi stop --force linux >/dev/null 2>&1 || true
}

# The compressed kernel sits at payload_offset (0x248) past the setup sectors, for
# payload_length (0x24c) bytes; the setup sector count is at 0x1f1.
extract_vmlinux() {
	local sects offset length
	sects=$(od -An -tu1 -j 0x1f1 -N1 "$bzimage" | tr -d ' ')
	[ "$sects" -ne 0 ] || sects=4
	offset=$(od -An -tu4 -j 0x248 -N4 "$bzimage" | tr -d ' ')
	length=$(od -An -tu4 -j 0x24c -N4 "$bzimage" | tr -d ' ')
	tail -c +$(((sects + 1) * 512 + offset + 1)) "$bzimage" | head -c "$length" \
		>"$BATS_TEST_TMPDIR/payload"
	case $(od -An -tx1 -N4 "$BATS_TEST_TMPDIR/payload" | tr -d ' ') in
	fd377a58) xz -dc --single-stream ;;
	28b52ffd) zstd -dc ;;
	1f8b*) gzip -dc ;;
	*) echo "unknown kernel compression" >&2; return 1 ;;
	esac <"$BATS_TEST_TMPDIR/payload" >"$BATS_TEST_TMPDIR/vmlinux"
	rm -f "$BATS_TEST_TMPDIR/payload"
}

# boot KERNEL MARKER: create, start, wait for MARKER on the console, stop.
boot() {
	local start log=$VI_HOME/vms/linux/run/console.log
	run vi create linux --kernel "$1" --initrd "$BATS_TEST_TMPDIR/initrd.gz" \
		--cmdline "$cmdline" --memory 512M --hv "$hv" --disk "$BATS_TEST_TMPDIR/root.qcow2"
	[ "$status" -eq 0 ]
	start=$SECONDS
	run vi start linux
	[ "$status" -eq 0 ]
	while ! grep -qF "$2" "$log" 2>/dev/null; do
		if ! vi list | grep -q '^linux .* running' ||
			[ $((SECONDS - start)) -ge "$timeout" ]; then
			tail -n 30 "$log" >&3
			false
		fi
		sleep 5
	done
	echo "# $(basename "$1") reached '$2' in $((SECONDS - start)) s on hv-$hv" >&3
	# Under software KVM the kernel may have stopped on its own meanwhile.
	run vi stop --timeout 10 linux
	[ "$status" -eq 0 ] || [ "$status" -eq 5 ]
	run vi list
	[[ "$output" == *"linux "*"stopped"* ]]
}

# The marker that proves the boot: init's, or with software KVM the kernel's own report
# of the command line, after which the E820 map must follow.
boot_stock() {
	local log=$VI_HOME/vms/linux/run/console.log
	if [ $hardware = 1 ]; then
		boot "$1" VI-SLOW-BOOT
		grep -q 'virtio_blk virtio[0-9]*: \[vda\] 131072 512-byte logical blocks' "$log"
	else
		boot "$1" "ACPI: DSDT"
		grep -q "Command line: $cmdline" "$log"
		grep -q 'BIOS-e820: \[mem 0x0000000000100000-0x000000001fffffff\] usable' "$log"
		grep -q 'ACPI: RSDP 0x00000000000F0000' "$log"
	fi
}

@test "the stock kernel's vmlinux boots" {
	extract_vmlinux
	boot_stock "$BATS_TEST_TMPDIR/vmlinux"
}

@test "the stock bzImage boots" {
	[ "${VI_SLOW_BZIMAGE:-0}" = 1 ] ||
		skip "the decompressor takes over ten minutes here: set VI_SLOW_BZIMAGE=1"
	boot_stock "$bzimage"
}
