#!/usr/bin/env bats
# virt-diff as the judge of the diff engine of `vi snapshot diff`: the same
# two states of a machine (tests/lib/diff-images.bash), our diff in one
# appliance and virt-diff's in its two, the same lines. Three appliance
# launches with inspection: some five minutes under TCG.

load ../lib/common
load ../lib/diff-images

setup() {
	command -v virt-diff >/dev/null || skip "no virt-diff (guestfs-tools)"
	diff_driver "$BATS_TEST_TMPDIR/bin"
	cd "$BATS_TEST_TMPDIR"
}

# virt-diff's lines less what its two appliances add: they number their
# disks in the order the kernel probed them, which varies, so st_dev
# differs for files that did not change at all ("- X", "+ X", "# changed:
# st_dev") and is named among the changes of those that did.
without_appliance_devices() {
	awk '
		/^# changed: st_dev$/ { n -= 2; next }
		/^# changed:/ { sub(/ st_dev/, "") }
		{ line[n++] = $0 }
		END { for (i = 0; i < n; i++) print line[i] }
	'
}

@test "the diff of two states prints the lines virt-diff prints" {
	diff_images "$BATS_TEST_TMPDIR/os" os
	cd os
	run -0 --separate-stderr tools-diff --content a.qcow2 -- b.qcow2
	echo "$output" >ours
	export LIBGUESTFS_BACKEND=direct
	[ -e /sys/module/kvm_intel ] || [ -e /sys/module/kvm_amd ] ||
		export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
	virt-diff -a a.qcow2 -A b.qcow2 >theirs
	without_appliance_devices <theirs >theirs.clean
	diff -u theirs.clean ours
	# Not a vacuous match.
	grep -qx '# changed: st_mode' ours
}
