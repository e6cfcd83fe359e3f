#!/usr/bin/env bats
# The Debian templates built for real: debian-12 by debootstrap from the
# mirror in this host's apt sources, booted through hv-qemu until its
# readiness probe (the SSH server is active) prints the marker, and stopped by
# its power button; debian-12-dev as an overlay on it with packages installed
# by apt. Downloads and package installs under TCG take many minutes: make
# check-slow only.

load ../lib/common
load ../lib/template

setup_file() {
	export VI_HOME=$BATS_FILE_TMPDIR/home
	mkdir -p "$VI_HOME"
	traversable "$VI_HOME"
	unset VI_TEMPLATE_PATH
	vi template build debian-12 >"$BATS_FILE_TMPDIR/debian.out" 2>&1 || true
}

setup() {
	unset VI_PLUGIN_DIR VISUAL EDITOR
}

@test "debian-12 builds an image that qemu-img passes, with its own kernel" {
	run cat "$BATS_FILE_TMPDIR/debian.out"
	[[ $output =~ ^built\ template\ \'debian-12\'\ as\ sha256:[0-9a-f]{12}\ in\ [0-9.]+\ s$ ]] ||
		{ echo "$output"; return 1; }
	local img
	img=$VI_HOME/images/$(digest_of debian-12)
	run -0 qemu-img check "$img/disk.qcow2"
	# A bzImage: "HdrS" at 0x202 (the x86 boot protocol).
	[ "$(od -An -c -j 514 -N 4 "$img/kernel" | tr -d ' ')" = HdrS ]
	[ -s "$img/initrd" ]
	[ "$(manifest_field "$img" marker)" = vi-guest-ready ]
	LIBGUESTFS_BACKEND=nosuch run -0 vi template build debian-12
	[[ $output == "template 'debian-12' is up to date: "* ]]
}

@test "debian-12 boots to its readiness marker: the SSH server runs" {
	need_hv_qemu
	local img
	img=$VI_HOME/images/$(digest_of debian-12)
	boot_image "$img" deb1
	local log=$VI_HOME/vms/deb1/run/console.log
	grep -q "vi-guest-ready" "$log"
	# Gracefully: systemd-logind powers off on the ACPI button.
	run -0 vi stop deb1
	[ "$output" = "stopped VM 'deb1'" ]
	run -0 vi destroy deb1
}

@test "debian-12 machines: a clone of a running one gets its own name, machine ID and SSH host keys" {
	need_hv_qemu
	run -0 vi create --hv qemu --template debian-12 --wait-ready --timeout 900 deb2
	run -0 vi clone --start deb2 deb2c
	wait_console deb2c vi-guest-ready 900
	local a=$VI_HOME/vms/deb2/run/console.log b=$VI_HOME/vms/deb2c/run/console.log
	grep -q "^vi: this is deb2, machine ID $(vi show --json deb2 | jq -r .vm.machine_id)" "$a"
	grep -q "^vi: this is deb2c, machine ID $(vi show --json deb2c | jq -r .vm.machine_id)" "$b"
	# Each printed the fingerprints of the host keys it made; none is shared.
	grep -a '^vi: SSH host key ' "$a" | tr -d '\r' | sort >keys.a
	grep -a '^vi: SSH host key ' "$b" | tr -d '\r' | sort >keys.b
	[ "$(wc -l <keys.a)" -ge 2 ]
	[ "$(wc -l <keys.b)" -ge 2 ]
	[ -z "$(comm -12 <(awk '{ print $6 }' keys.a) <(awk '{ print $6 }' keys.b))" ]
	vi -q stop --force deb2c
	vi -q stop --force deb2
	vi -q destroy deb2c
	vi -q destroy deb2
}

@test "debian-12 machines: vi exec and vi ssh as the template's user, and another user from the same image" {
	need_hv_qemu
	run -0 vi create --hv qemu --template debian-12 --wait-ready --timeout 900 deb3
	run -0 vi exec deb3 -- uname -n
	[ "$output" = deb3 ]
	run -0 vi ssh deb3 -- id -un
	[ "$output" = debian ]
	run -0 vi exec deb3 -- sudo -n true
	ssh-keygen -q -t ed25519 -N '' -C alice -f "$BATS_TEST_TMPDIR/alice"
	run -0 vi create --hv qemu --template debian-12 --wait-ready --timeout 900 --user alice \
		--ssh-key "$BATS_TEST_TMPDIR/alice.pub" deb4
	[[ "$output" != *"built template"* ]]
	[ "$(vi show --json deb3 | jq -r .vm.template_digest)" = "$(vi show --json deb4 | jq -r .vm.template_digest)" ]
	run -0 vi exec deb4 -- id -un
	[ "$output" = alice ]
	vi -q destroy --force deb4
	vi -q destroy --force deb3
}

@test "debian-12-dev is an overlay on debian-12 with build-essential and git" {
	run -0 vi template build debian-12-dev
	[[ $output =~ ^built\ template\ \'debian-12-dev\'\ as\ sha256: ]]
	local base dev
	base=$(digest_of debian-12)
	dev=$(digest_of debian-12-dev)
	run -0 qemu-img info --output=json "$VI_HOME/images/$dev/disk.qcow2"
	[ "$(jq -r '."backing-filename"' <<<"$output")" = "../$base/disk.qcow2" ]
	run -0 qemu-img check "$VI_HOME/images/$dev/disk.qcow2"
	export LIBGUESTFS_BACKEND=direct
	[ -e /sys/module/kvm_intel ] || [ -e /sys/module/kvm_amd ] || export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
	run -0 guestfish --ro --format=qcow2 -a "$VI_HOME/images/$dev/disk.qcow2" -i <<-'EOF'
		is-file /usr/bin/gcc followsymlinks:true
		is-file /usr/bin/git
		inspect-get-distro /dev/sda1
	EOF
	[ "$output" = "$(printf 'true\ntrue\ndebian')" ]
}
