#!/usr/bin/env bats
# The diff engine of `vi snapshot diff` (vi_tools_diff in vi-tools.so),
# driven by tests/lib/tools-diff.c: two states of a machine with an
# operating system on two partitions, and of one with a bare file system,
# one libguestfs appliance each (a minute or more under TCG), shared by
# this file's tests: about two minutes, so it runs in make check-slow.
# tools-diff-virt-diff.bats holds the same output against virt-diff's own.

load ../lib/common
load ../lib/diff-images

setup_file() {
	diff_driver "$BATS_FILE_TMPDIR/bin"
	diff_images "$BATS_FILE_TMPDIR/os" os
	diff_images "$BATS_FILE_TMPDIR/bare" bare
	sha256sum "$BATS_FILE_TMPDIR"/*/*.qcow2 >"$BATS_FILE_TMPDIR/sums"
	cd "$BATS_FILE_TMPDIR/os" || return 1
	tools-diff --content a.qcow2 -- b.qcow2 >out 2>err
	echo $? >rc
	# With stderr on a terminal, for the progress line.
	cd "$BATS_FILE_TMPDIR/bare" || return 1
	script -qec "tools-diff --format qcow2 a.qcow2 -- b.qcow2 >out" tty </dev/null >/dev/null
	echo $? >rc
	# The same two states through the verb: a VM of the fixture backend on the
	# bare state A, a snapshot of it, then B's changes as its current disk.
	mkdir -p "$BATS_FILE_TMPDIR/cli/plugins" && cd "$BATS_FILE_TMPDIR/cli" || return 1
	ln -s "$VI_BUILD/tests/plugins/hv-fixture.so" plugins/
	export VI_HOME=$PWD/home VI_PLUGIN_DIR=$PWD/plugins
	cp ../bare/base.qcow2 disk.qcow2
	touch vmlinuz
	vi -q create --hv fixture --kernel "$PWD/vmlinuz" --disk "$PWD/disk.qcow2" --nic none m
	vi -q snapshot create m s1
	now=$(vi show --json m | jq -r '.vm.disks[0].path')
	cp ../bare/b.qcow2 "$now"
	qemu-img rebase -q -u -f qcow2 -b "$PWD/disk.qcow2" -F qcow2 "$now"
	vi snapshot diff --json m s1 >out 2>err
	echo $? >rc
	unset VI_HOME VI_PLUGIN_DIR
}

setup() {
	export PATH=$BATS_FILE_TMPDIR/bin:$PATH
	cd "$BATS_FILE_TMPDIR"
}

@test "a diff prints virt-diff's lines: added, removed, new content, new mode, on two file systems" {
	cat os/err
	[ "$(cat os/rc)" = 0 ]
	# Not a terminal: no progress.
	[ ! -s os/err ]
	diff -u - os/out <<-'EOF'
		+ - 0644          6 /boot/config
		+ - 0644          6 /data/added
		= - 0644          4 /data/change
		@@ -1 +1,2 @@
		-old
		+new content
		+line2
		@@ End of diff @@
		- - 0644          2 /data/mode
		+ - 0600          2 /data/mode
		# changed: st_mode
		+ d 0755       1024 /data/newdir
		+ l 0777          4 /data/newlink -> keep
		- - 0644          5 /data/remove
	EOF
}

@test "a machine with no operating system has its only file system compared" {
	[ "$(cat bare/rc)" = 0 ]
	# Without --content a changed file is its line alone.
	diff -u - bare/out <<-'EOF'
		+ - 0644          6 /data/added
		= - 0644          4 /data/change
		- - 0644          2 /data/mode
		+ - 0600          2 /data/mode
		# changed: st_mode
		+ d 0755       1024 /data/newdir
		+ l 0777          4 /data/newlink -> keep
		- - 0644          5 /data/remove
	EOF
}

@test "on a terminal the diff shows the files read" {
	grep -q 'diffing: starting the appliance' bare/tty
	grep -Eq 'diffing: [0-9]+ files read' bare/tty
	# And clears its line at the end.
	tail -n 3 bare/tty | grep -q $'\r\033\[K'
}

@test "the images of both states are opened read-only: nothing is written" {
	sha256sum -c --quiet sums
	run -0 qemu-img check os/b.qcow2
	[[ $output == *"No errors were found on the image."* ]]
}

@test "a disk that does not exist is an error before any appliance starts" {
	run -3 tools-diff os/a.qcow2 -- os/nosuch.qcow2
	[ "$output" = "tools-diff: cannot open 'os/nosuch.qcow2': No such file or directory" ]
}

@test "vi snapshot diff compares a snapshot with the VM's current disks, in JSON too" {
	cat cli/err
	[ "$(cat cli/rc)" = 0 ]
	[ "$(jq -r '.from + " " + (.to // "now")' cli/out)" = "s1 now" ]
	[ "$(jq -r '.entries[] | .kind + " " + .path' cli/out)" = "$(printf '%s\n' \
		'added /data/added' 'changed /data/change' 'attributes /data/mode' \
		'added /data/newdir' 'added /data/newlink' 'removed /data/remove')" ]
	[ "$(jq -r '.entries[] | select(.path == "/data/mode") | .changed | join(",")' cli/out)" = st_mode ]
	[ "$(jq -r '.entries[] | select(.path == "/data/newlink") | .b.link' cli/out)" = keep ]
}

@test "vi snapshot diff refuses a running VM's current state and unknown snapshots, before any launch" {
	export VI_HOME=$BATS_FILE_TMPDIR/cli/home VI_PLUGIN_DIR=$BATS_FILE_TMPDIR/cli/plugins
	run -3 vi snapshot diff m nope
	[ "$output" = "vi: error: VM 'm' has no snapshot 'nope'" ]
	mkdir -p "$VI_HOME/vms/m/run"
	echo running >"$VI_HOME/vms/m/run/fixture-state"
	run -5 vi snapshot diff m s1
	[ "$output" = "vi: error: VM 'm' is running: stop it, or name two snapshots" ]
	rm "$VI_HOME/vms/m/run/fixture-state"
}
