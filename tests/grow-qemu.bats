#!/usr/bin/env bats
# vi grow on hv-qemu with real boots of the shipped `tiny` template: what the
# guest itself sees afterwards.

load lib/common
load lib/template

setup_file() {
	tiny_store
}

setup() {
	need_hv_qemu
	name=gq-$$-$BATS_TEST_NUMBER
}

teardown() {
	for vm in $(vi list --json 2>/dev/null | jq -r '.vms[].name'); do
		vi -q destroy --force "$vm" || true
	done
}

# Starts NAME and waits until its SSH server lets vi in.
start_ready() {
	vi -q start "$1"
	for _ in $(seq 180); do
		vi exec "$1" -- true 2>/dev/null && return 0
		sleep 1
	done
	echo "VM '$1' did not answer over SSH"
	return 1
}

# The guest's root file system size in KiB, as df inside it says.
root_kib() { vi exec "$1" -- df -k / | awk 'NR == 2 { print $2 }'; }

@test "a stopped machine's disk and root file system grow at once; without libguestfs, at its next boot" {
	vi -q create --hv qemu --template tiny --wait-ready "$name"
	before=$(root_kib "$name")
	[ "$before" -gt 0 ]
	vi -q stop "$name"
	run -0 vi grow "$name" --disk +64M
	[[ $output == *"  disk vda  64M -> 128M"* ]]
	[[ $output == *"  file system ext4 "*" -> "* ]]
	disk=$(vi show --json "$name" | jq -r '.vm.disks[0].path')
	qemu-img check -q "$disk"
	start_ready "$name"
	after=$(root_kib "$name")
	echo "root: $before KiB before, $after KiB after"
	[ "$after" -gt $((before + 50000)) ]
	# Grown already: the boot has nothing to grow and says nothing of it.
	! tr -d '\r' <"$VI_HOME/vms/$name/run/console.log" | grep -q "root file system" || false
	# Where libguestfs cannot run, the partition grows now and the file system at boot.
	vi -q stop "$name"
	LIBGUESTFS_HV=/bin/false run -0 vi grow "$name" --disk +64M
	[[ $output == *"file system: partition vda1 grown; its file system grows at the next boot"* ]]
	start_ready "$name"
	tr -d '\r' <"$VI_HOME/vms/$name/run/console.log" | grep -q "vi: seed: root file system on /dev/vda1 grown to"
	[ "$(root_kib "$name")" -gt $((after + 50000)) ]
}

# What the guest says: its online CPUs, and its memory in KiB.
guest_cpus() { vi exec "$1" -- cat /sys/devices/system/cpu/online; }
mem_kib() { vi exec "$1" -- cat /proc/meminfo | awk '/^MemTotal:/ { print $2 }'; }

@test "a running machine's vCPUs, memory and root file system grow live, and the guest sees them at once" {
	vi -q create --hv qemu --template tiny --max-cpus 2 --max-memory 1G --wait-ready "$name"
	run -0 guest_cpus "$name"
	[ "$output" = 0 ]
	mem_before=$(mem_kib "$name")
	fs_before=$(root_kib "$name")
	run -0 vi grow --check "$name"
	[[ $output == *"filesystem      ok  ext4 "*" on /dev/vda1, /: grows online"* ]]

	# All three at once, as an admin would ask.
	run -0 vi grow "$name" --cpus +1 --memory +256M --disk +1G
	[[ $output == *"cpus      1 -> 2 (the guest has 2)"* ]]
	[[ $output == *"  disk vda  64M -> 1088M"* ]]
	[[ $output == *"file system ext4 "*" -> "* ]]
	run -0 guest_cpus "$name"
	[ "$output" = 0-1 ]
	mem_after=$(mem_kib "$name")
	echo "memory: $mem_before KiB before, $mem_after KiB after"
	[ "$mem_after" -ge $((mem_before + 256 * 1024)) ]
	fs_after=$(root_kib "$name")
	echo "root: $fs_before KiB before, $fs_after KiB after"
	[ "$fs_after" -gt $((fs_before + 900000)) ]
	# The partition table says so too, for the next boot: vda1 ends at the
	# disk's end (1088M is 2228224 sectors).
	run -0 vi exec "$name" -- sfdisk -d /dev/vda
	[[ $output =~ /dev/vda1\ :\ start=\ *([0-9]+),\ size=\ *([0-9]+) ]]
	[ $((BASH_REMATCH[1] + BASH_REMATCH[2])) -eq 2228224 ]

	# A disk grown under the guest by other means: naming its size grows what is on it.
	virsh -q -c qemu:///system blockresize "$name" vda 1152M
	run -0 vi grow "$name" --disk vda:1152M
	[[ $output == *"file system ext4 "*" -> "* ]]
	[ "$(root_kib "$name")" -gt $((fs_after + 50000)) ]

	# Past the maximum: refused, naming it, nothing changed.
	run -5 vi grow "$name" --memory 2G
	[[ $output == *"at most 1G of memory while it runs"* ]]
	[ "$(mem_kib "$name")" = "$mem_after" ]
}

@test "a stopped machine that no template describes has its partition and file system grown at once" {
	img=$(vi template show --json tiny | jq -r .image_digest)
	img=$VI_HOME/images/$img
	disk=$BATS_TEST_TMPDIR/disks/root.qcow2
	mkdir -p "${disk%/*}"
	traversable "${disk%/*}"
	qemu-img convert -O qcow2 "$img/disk.qcow2" "$disk"
	vi -q create --hv qemu --kernel "$img/kernel" --initrd "$img/initrd" \
		--cmdline "console=ttyS0 root=/dev/vda1 rw" --disk "$disk" "$name"
	run -0 vi grow "$name" --disk +64M
	[[ $output == *"  disk vda  64M -> 128M"* ]]
	[[ $output =~ file\ system\ ext4\ ([0-9]+)K\ -\>\ ([0-9]+)K ]]
	[ "${BASH_REMATCH[2]}" -gt $((BASH_REMATCH[1] + 50000)) ]
	qemu-img check -q "$disk"
}
