#!/usr/bin/env bats
# vi image as a user runs it, with qemu-img as the judge of what it writes.

load lib/common

setup() {
	common_setup
	cd "$BATS_TEST_TMPDIR"
}

# The big-endian 64-bit number at offset $2 of file $1.
be64() {
	od -An -tu8 --endian=big -j"$2" -N8 "$1" | tr -d ' '
}

# A 1G qcow2 image with one data cluster, damaged in a way check finds:
# corrupt_image refcount|overlap FILE
corrupt_image() {
	local how=$1 f=$2 mask=$((0x00fffffffffffe00)) l1 l2 data rb
	qemu-img create -q -f qcow2 "$f" 1G
	qemu-io -c 'write -P 0x5a 0 64k' "$f" >/dev/null
	l1=$(be64 "$f" 40)
	l2=$(($(be64 "$f" "$l1") & mask))
	data=$(($(be64 "$f" "$l2") & mask))
	case $how in
	refcount) # the data cluster counts as free: the next allocation would take it
		rb=$(be64 "$f" "$(be64 "$f" 48)")
		dd if=/dev/zero of="$f" bs=1 seek=$((rb + 2 * data / 65536)) count=2 conv=notrunc \
			status=none ;;
	overlap) # the second L1 entry shares the first one's L2 table
		dd if="$f" of="$f" bs=1 skip="$l1" seek=$((l1 + 8)) count=8 conv=notrunc status=none ;;
	esac
}

# A qcow2 image with 2M clusters whose first N clusters all map one data
# cluster, with the refcount to match: a large image that takes no room.
# shared_image FILE N (N a power of two)
shared_image() {
	local f=$1 n=$2 l2 data i
	qemu-img create -q -f qcow2 -o cluster_size=2M "$f" $((n * 2))M
	qemu-io -c 'write -P 0x5a 0 2M' "$f" >/dev/null
	l2=$(($(be64 "$f" "$(be64 "$f" 40)") & 0x00fffffffffffe00))
	data=$(($(be64 "$f" "$l2") & 0x00fffffffffffe00))
	# The L2 entry without the copied flag, which says refcount 1.
	printf "$(printf %016x "$data" | sed 's/../\\x&/g')" >entry
	for ((i = 1; i < n; i *= 2)); do
		cat entry entry >entries
		mv entries entry
	done
	dd if=entry of="$f" bs=8 seek=$((l2 / 8)) conv=notrunc status=none
	rm entry
	printf "$(printf '\\x%02x\\x%02x' $((n >> 8)) $((n & 255)))" |
		dd of="$f" bs=1 seek=$(($(be64 "$f" "$(be64 "$f" 48)") + 2 * (data >> 21))) \
			conv=notrunc status=none
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

@test "an image check calls corrupt is refused before anything is written" {
	corrupt_image refcount refcount.qcow2
	corrupt_image overlap overlap.qcow2
	for f in refcount.qcow2 overlap.qcow2; do
		run -1 vi image check "$f"
		[ "${lines[-1]}" = "vi: error: '$f' has 2 corruptions" ]
		# --json: the report is the one document, its exit status the verdict.
		run -1 --separate-stderr vi --json image check "$f"
		[ "$(jq -s 'length' <<<"$output")" = 1 ]
		[ "$(jq -r .corruptions <<<"$output")" = 2 ]
		sum=$(sha256sum <"$f")
		run -1 vi image resize "$f" +1G
		[ "$output" = "vi: error: '$f' is corrupt: vi image check finds 2 errors" ]
		run -1 vi image convert "$f" copy.qcow2
		[ "$output" = "vi: error: '$f' is corrupt: vi image check finds 2 errors" ]
		[ ! -e copy.qcow2 ]
		[ "$(sha256sum <"$f")" = "$sum" ]
	done
	# A damaged layer anywhere in the chain that a copy reads.
	qemu-img create -q -f qcow2 -b refcount.qcow2 -F qcow2 top.qcow2
	run -1 vi image convert top.qcow2 copy.qcow2
	[ "$output" = "vi: error: 'refcount.qcow2' is corrupt: vi image check finds 2 errors" ]
	[ ! -e copy.qcow2 ]
}

@test "a backing file that is a FIFO is refused, not waited on" {
	mkfifo fifo
	qemu-img create -q -f qcow2 -u -b fifo -F raw top.qcow2 1G
	local why="cannot open 'fifo': it is not a regular file or block device"
	# timeout only guards against the hang this test is about.
	run -2 timeout 10 vi image info --chain top.qcow2
	[ "$output" = "vi: error: cannot open the backing file of 'top.qcow2': $why" ]
	run -2 timeout 10 vi image convert top.qcow2 flat.qcow2
	[ "$output" = "vi: error: cannot open the backing file of 'top.qcow2': $why" ]
	[ ! -e flat.qcow2 ]
	run -2 timeout 10 vi image resize top.qcow2 +1G
	[ "$output" = "vi: error: cannot open the backing file of 'top.qcow2': $why" ]
	run -2 timeout 10 vi image create --backing fifo overlay.qcow2
	[ "$output" = "vi: error: cannot create 'overlay.qcow2': $why" ]
	run -2 timeout 10 vi image info fifo
	[ "$output" = "vi: error: $why" ]
}

@test "a backing chain may be 256 images deep, and no deeper" {
	# l001 to l256 on l000, made by copying one overlay and patching the
	# backing name in its header.
	qemu-img create -q -f qcow2 l000.qcow2 1M
	qemu-img create -q -f qcow2 -u -b l000.qcow2 -F qcow2 layer 1M
	local at i
	at=$(be64 layer 8)
	for i in $(seq 1 256); do
		cp layer "$(printf l%03d.qcow2 "$i")"
		printf l%03d $((i - 1)) |
			dd of="$(printf l%03d.qcow2 "$i")" bs=1 seek="$at" conv=notrunc status=none
	done
	run -0 vi image info --chain --json l255.qcow2
	[ "$(jq -r '.images | length' <<<"$output")" = 256 ]
	[ "$(jq -r '.images[255].path' <<<"$output")" = l000.qcow2 ]
	run -4 vi image create --backing l255.qcow2 top.qcow2
	[ "$output" = "vi: error: cannot create 'top.qcow2': its backing chain would be deeper than 256 images" ]
	[ ! -e top.qcow2 ]
	run -4 vi image info --chain l256.qcow2
	[ "$output" = "vi: error: cannot open 'l256.qcow2': its backing chain is deeper than 256 images" ]
}

@test "a killed convert leaves nothing under the new name, and the retry works" {
	shared_image big.qcow2 8192
	run -0 qemu-img check big.qcow2
	# Against itself as backing nothing is written: the copy only reads,
	# 16G twice, and is killed on the way.
	vi image convert --backing big.qcow2 big.qcow2 copy.qcow2 3>&- &
	local pid=$! i
	for ((i = 0; i < 1000; i++)); do
		compgen -G '.copy.qcow2.*' >/dev/null || [ -e copy.qcow2 ] && break
		sleep 0.01
	done
	kill -9 "$pid"
	wait "$pid" || true
	[ ! -e copy.qcow2 ]
	run -0 vi image convert --backing big.qcow2 big.qcow2 copy.qcow2
	[ "$output" = "converted 'big.qcow2' to qcow2 image 'copy.qcow2'" ]
	run -0 qemu-img check copy.qcow2
	# What the killed one left aside is gone too.
	[ "$(ls -A)" = "$(printf '%s\n' big.qcow2 copy.qcow2)" ]
}
