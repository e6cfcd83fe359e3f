#!/usr/bin/env bats
# vi image as a user runs it, with qemu-img as the judge of what it writes.

load lib/common

setup() {
	common_setup
	cd "$BATS_TEST_TMPDIR"
}

@test "create a qcow2 image that qemu-img accepts" {
	run -0 vi image create disk.qcow2 1G
	[ "$output" = "created qcow2 image 'disk.qcow2'" ]
	run -0 qemu-img check disk.qcow2
	[ "$(qemu-img info --output=json disk.qcow2 | jq -r '."virtual-size"')" = 1073741824 ]
	[ "$(qemu-img info --output=json disk.qcow2 | jq -r '."format-specific".data.compat')" = 1.1 ]
}

@test "create version 2 with another cluster size, and raw" {
	run -0 vi image create --compat 2 --cluster-size 4K v2.qcow2 100M
	[ "$(qemu-img info --output=json v2.qcow2 | jq -r '."cluster-size"')" = 4096 ]
	[ "$(qemu-img info --output=json v2.qcow2 | jq -r '."format-specific".data.compat')" = 0.10 ]
	run -0 vi image create -f raw disk.raw 10M
	[ "$(stat -c %s disk.raw)" = 10485760 ]
}

@test "an overlay is instant metadata and reads through to its backing image" {
	qemu-img create -q -f raw base.raw 8M
	printf 'golden' | dd of=base.raw conv=notrunc status=none
	run -0 vi image create --backing base.raw top.qcow2
	run -0 qemu-img check top.qcow2
	[ "$(qemu-img info --output=json top.qcow2 | jq -r '."backing-filename"')" = base.raw ]
	[ "$(qemu-img info --output=json top.qcow2 | jq -r '."virtual-size"')" = 8388608 ]
	qemu-img convert -O raw top.qcow2 flat.raw
	[ "$(head -c 6 flat.raw)" = golden ]
}

@test "info describes the image and, with --chain, its backing chain" {
	qemu-img create -q -f qcow2 base.qcow2 64M
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
	run -0 vi image info top.qcow2
	[[ $output == *"format:         qcow2"* ]]
	[[ $output == *"virtual size:   64M (67108864 bytes)"* ]]
	[[ $output == *"backing file:   base.qcow2 (qcow2)"* ]]
	run -0 vi image info --chain --json top.qcow2
	[ "$(jq -r '.images | length' <<<"$output")" = 2 ]
	[ "$(jq -r '.images[1].path' <<<"$output")" = base.qcow2 ]
}

@test "info prints a backing file name's control characters escaped" {
	qemu-img create -q -f qcow2 -b $'x\e]0;PWNED\a' -F raw -u top.qcow2 1M
	run -0 vi image info top.qcow2
	[ "${lines[7]}" = 'backing file:   x\x1b]0;PWNED\x07 (raw)' ]
}

@test "check finds the leaks qemu-img finds, and repairs them" {
	qemu-img create -q -f qcow2 leaky.qcow2 64M
	qemu-io -c 'write -P 0x5a 0 64k' leaky.qcow2 >/dev/null
	# Cut the L1 entry: its L2 table and data cluster keep refcounts but lose
	# their user, which is what a leak is.
	local l1
	l1=$(od -An -tu8 --endian=big -j40 -N8 leaky.qcow2 | tr -d ' ')
	dd if=/dev/zero of=leaky.qcow2 bs=1 seek="$l1" count=8 conv=notrunc status=none
	run -3 qemu-img check leaky.qcow2
	[[ $output == *"2 leaked clusters were found"* ]]
	run -1 vi image check --json leaky.qcow2
	[ "$(jq -r .leaks <<<"$output")" = 2 ]
	[ "$(jq -r .corruptions <<<"$output")" = 0 ]
	run -1 vi image check leaky.qcow2
	[ "${lines[-1]}" = "vi: error: 'leaky.qcow2' has 2 leaked clusters (repair with --repair leaks)" ]
	run -0 vi image check --repair leaks leaky.qcow2
	run -0 qemu-img check leaky.qcow2
	run -0 vi image check --json leaky.qcow2
	[ "$(jq -r .leaks <<<"$output")" = 0 ]
}

@test "convert flattens a chain into an image qemu-img compares equal" {
	qemu-img create -q -f qcow2 base.qcow2 16M
	qemu-io -c 'write -P 0x11 0 2M' base.qcow2 >/dev/null
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
	qemu-io -c 'write -P 0x22 1M 3M' top.qcow2 >/dev/null
	run -0 vi image convert top.qcow2 flat.qcow2
	run -0 qemu-img check flat.qcow2
	run -0 qemu-img compare top.qcow2 flat.qcow2
	run -0 vi image convert --format raw top.qcow2 flat.raw
	run -0 qemu-img compare -f qcow2 -F raw top.qcow2 flat.raw
}

@test "resize grows an image; shrinking is refused" {
	vi image create disk.qcow2 1G
	run -0 vi image resize disk.qcow2 +1G
	[ "$output" = "resized 'disk.qcow2' to 2G" ]
	[ "$(qemu-img info --output=json disk.qcow2 | jq -r '."virtual-size"')" = 2147483648 ]
	run -0 qemu-img check disk.qcow2
	run -2 vi image resize disk.qcow2 1G
	[ "$output" = "vi: error: 'disk.qcow2' is 2G: images only grow" ]
}

@test "bad input gets one clear error and the documented exit code" {
	run -3 vi image info nosuch.qcow2
	[[ $output == "vi: error: "*"nosuch.qcow2"* ]]
	run -2 vi image create disk.qcow2 lots
	[ "$output" = "vi: error: invalid size 'lots': expected a size such as 512M or 2G" ]
	run -2 vi image create disk.qcow2
	[ "$output" = "vi: error: a size is needed without --backing" ]
	run -2 vi image create -f vmdk disk.vmdk 1G
	[[ $output == "vi: error: "*"vmdk"* ]]
	run -2 vi image create -f raw --backing x disk.raw 1G
	[ "$output" = "vi: error: raw images have no backing file, clusters or version" ]
	vi image create disk.qcow2 1G
	run -5 vi image create disk.qcow2 1G
	[[ $output == "vi: error: "*"disk.qcow2"* ]]
	run -2 vi image check --repair everything disk.qcow2
	[ "$output" = "vi: error: invalid --repair 'everything': expected leaks or all" ]
	printf 'QFI\xfb\x00\x00\x00\x09' >bad.qcow2
	head -c 4096 /dev/zero >>bad.qcow2
	run -4 vi image info bad.qcow2
	[ "$output" = "vi: error: 'bad.qcow2' has qcow2 version 9, which is not supported" ]
}

@test "a backing loop is refused" {
	qemu-img create -q -f qcow2 a.qcow2 16M
	qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2
	qemu-img rebase -q -u -b b.qcow2 -F qcow2 a.qcow2
	run -1 vi image info --chain b.qcow2
	[ "$output" = "vi: error: cannot open 'b.qcow2': its backing chain loops back to 'b.qcow2'" ]
}
