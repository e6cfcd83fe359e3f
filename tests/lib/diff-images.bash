# Two states of one small machine for the diff tests, made without an
# appliance: e2fsprogs writes the file systems, qemu-img the qcow2 chains.
#
# diff_images DIR os|bare makes in DIR:
#   base.qcow2  the machine's disk
#   a.qcow2     state A: an empty overlay on base.qcow2
#   b.qcow2     state B: an overlay on base.qcow2 with the clusters that
#               changed
# os: an MBR disk with a root partition (a Linux as inspection sees one,
# with an fstab naming both file systems by UUID) and a /boot partition;
# bare: one ext4 file system on the whole disk, no operating system.
# From A to B: /data/added, /data/newdir and the symbolic link
# /data/newlink -> keep appear, /data/remove goes, /data/change gets new
# content, /data/mode goes from 0644 to 0600, and with os /boot/config
# appears.

# tests/lib/tools-diff, which runs vi_tools_diff() as `vi snapshot diff`
# will, first on PATH: it loads vi-tools.so from beside itself, as vi does,
# so it goes to a directory of its own: diff_driver DIR
diff_driver() {
	mkdir -p "$1"
	cp "$VI_BUILD/tests/lib/tools-diff" "$1/"
	ln -sf "$VI_BUILD/vi-tools.so" "$1/"
	export PATH=$1:$PATH
}

DIFF_IMAGE_MB=64
DIFF_ROOT_START=2048  # sectors
DIFF_ROOT_SECTORS=40960
DIFF_BOOT_START=43008

# debugfs on the ext4 file system at byte offset OFF of FILE: diff_debugfs
# FILE OFF COMMANDS-FILE
diff_debugfs() {
	local out
	out=$(debugfs -w -f "$3" "$1?offset=$2" 2>&1) || { echo "$out"; return 1; }
	# debugfs exits 0 whatever a command did: its complaints say.
	if grep -Ev '^(debugfs|Allocated inode: [0-9]+$|$)' <<<"$out" | grep -q .; then
		echo "$out"
		return 1
	fi
}

# OUT, an overlay on BACKING (a qcow2 image of OLD) with the 64 KiB clusters
# in which NEW differs from OLD, as a snapshot's overlay holds what the
# machine wrote: diff_overlay OLD NEW BACKING OUT
diff_overlay() {
	local old=$1 new=$2 backing=$3 out=$4 c writes=()
	qemu-img create -q -f qcow2 -b "$backing" -F qcow2 "$out"
	for c in $(cmp -l "$old" "$new" | awk '{ print int(($1 - 1) / 65536) }' | uniq); do
		dd if="$new" of="$out.$c" bs=64K skip="$c" count=1 status=none
		writes+=(-c "write -q -s $out.$c $((c * 65536)) 64k")
	done
	qemu-io -f qcow2 "${writes[@]}" "$out"
	rm -f "$out".*
}

diff_images() {
	local dir=$1 layout=$2 root_off=0 boot_off uuid_root uuid_boot
	mkdir -p "$dir/root/data/sub" "$dir/boot"
	cd "$dir" || return 1
	printf 'hello\n' >root/data/keep
	printf 'old\n' >root/data/change
	printf 'gone\n' >root/data/remove
	printf 'm\n' >root/data/mode
	ln -s keep root/data/link
	chmod 0644 root/data/keep root/data/change root/data/remove root/data/mode
	chmod 0755 root root/data root/data/sub
	truncate -s ${DIFF_IMAGE_MB}M base.raw
	if [ "$layout" = os ]; then
		uuid_root=$(cat /proc/sys/kernel/random/uuid)
		uuid_boot=$(cat /proc/sys/kernel/random/uuid)
		mkdir -p root/etc root/bin root/boot
		printf 'UUID=%s / ext4 defaults 0 1\nUUID=%s /boot ext4 defaults 0 2\n' \
			"$uuid_root" "$uuid_boot" >root/etc/fstab
		printf 'ID=tiny\nNAME=Tiny\nVERSION_ID=1\n' >root/etc/os-release
		printf 'kernel\n' >boot/vmlinuz
		chmod 0755 root/etc root/bin root/boot boot
		printf 'label: dos\nstart=%s, size=%s, type=83\nstart=%s, type=83\n' \
			$DIFF_ROOT_START $DIFF_ROOT_SECTORS $DIFF_BOOT_START | sfdisk -q base.raw
		root_off=$((DIFF_ROOT_START * 512))
		boot_off=$((DIFF_BOOT_START * 512))
		mke2fs -q -t ext4 -U "$uuid_root" -E offset=$root_off -d root base.raw \
			$((DIFF_ROOT_SECTORS / 2))k
		mke2fs -q -t ext4 -U "$uuid_boot" -E offset=$boot_off -d boot base.raw \
			$(((DIFF_IMAGE_MB * 2048 - DIFF_BOOT_START) / 2))k
	else
		mke2fs -q -t ext4 -d root base.raw
	fi
	cp base.raw b.raw
	printf 'added\n' >new-added
	printf 'new content\nline2\n' >new-change
	chmod 0644 new-added new-change
	cat >changes <<-'EOF'
		rm /data/remove
		rm /data/change
		write new-change /data/change
		write new-added /data/added
		sif /data/mode mode 0100600
		mkdir /data/newdir
		symlink /data/newlink keep
	EOF
	diff_debugfs b.raw $root_off changes || return 1
	if [ "$layout" = os ]; then
		printf 'write new-added /config\n' >changes
		diff_debugfs b.raw $boot_off changes || return 1
	fi
	qemu-img convert -f raw -O qcow2 base.raw base.qcow2
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 a.qcow2
	diff_overlay base.raw b.raw base.qcow2 b.qcow2
	rm -f base.raw b.raw
	cd - >/dev/null || return 1
}
