#!/usr/bin/env bats
# The test hosts of lib/hosts with a libvirtd each (hosts_setup 2 --libvirt):
# libvirt takes them for two machines, and moves a running QEMU guest from one
# to the other by its own peer-to-peer migration over qemu+ssh.

load ../lib/common
load ../lib/hosts

setup_file() {
	hosts_setup 2 --libvirt
	[ -z "${HOSTS_SKIP:-}" ] || return 0
	# A guest whose progress lives in its memory: it counts on its console.
	KERNEL=$(printf '%s\n' /boot/vmlinuz-* | sort -V | tail -n 1)
	export KERNEL
	"$VI_TOP/tests/lib/mkinitramfs" -o "$HOSTS_DIR/count.gz" \
		--kernel-version "${KERNEL#/boot/vmlinuz-}" \
		--run 'i=0; while :; do i=$((i+1)); echo "count $i"; sleep 1; done'
}

teardown_file() {
	hosts_teardown
}

setup() {
	hosts_require
	common_setup
	name=g$BATS_TEST_NUMBER
	uuid=$(cat /proc/sys/kernel/random/uuid)
}

teardown() {
	local i vm
	[ -n "${HOSTS_ID:-}" ] || return 0
	for i in 1 2; do
		for vm in $(host_virsh "$i" list --all --name 2>/dev/null); do
			host_virsh "$i" -q destroy "$vm" >/dev/null 2>&1 || true
			host_virsh "$i" -q undefine "$vm" >/dev/null 2>&1 || true
		done
	done
}

# The guest's files on host I, in a directory of that host's: its kernel and
# initramfs, a backing image whose first MiB is 0x11 and a disk on it, empty
# (like a destination's before a migration), or with 0x22 in its second MiB
# (like a running guest's): guest_files I [empty]
guest_files() {
	local g
	g=$(host_dir "$1")/$name
	mkdir -m 0755 "$g"
	cp "$KERNEL" "$g/vmlinuz"
	cp "$HOSTS_DIR/count.gz" "$g/initrd.gz"
	qemu-img create -q -f qcow2 "$g/base.qcow2" 64M
	qemu-io -f qcow2 -c "write -P 0x11 0 1M" "$g/base.qcow2" >/dev/null
	qemu-img create -q -f qcow2 -b "$g/base.qcow2" -F qcow2 "$g/disk.qcow2"
	[ "${2:-}" = empty ] || qemu-io -f qcow2 -c "write -P 0x22 1M 1M" "$g/disk.qcow2" >/dev/null
}

# The domain of the guest whose files are in DIR, its console in DIR/console.log.
guest_xml() { # DIR
	cat <<-EOF
		<domain type='qemu'>
		  <name>$name</name>
		  <uuid>$uuid</uuid>
		  <memory unit='MiB'>128</memory>
		  <vcpu>1</vcpu>
		  <os>
		    <type arch='x86_64' machine='pc'>hvm</type>
		    <kernel>$1/vmlinuz</kernel>
		    <initrd>$1/initrd.gz</initrd>
		    <cmdline>console=ttyS0</cmdline>
		  </os>
		  <devices>
		    <disk type='file' device='disk'>
		      <driver name='qemu' type='qcow2'/>
		      <source file='$1/disk.qcow2'/>
		      <target dev='vda' bus='virtio'/>
		    </disk>
		    <serial type='file'>
		      <source path='$1/console.log'/>
		    </serial>
		    <memballoon model='none'/>
		  </devices>
		</domain>
	EOF
}

# Defines the guest on host I, from its files there.
guest_define() { # I
	guest_xml "$(host_dir "$1")/$name" >"$BATS_TEST_TMPDIR/$name.xml"
	host_virsh "$1" -q define "$BATS_TEST_TMPDIR/$name.xml" >/dev/null
}

# The counts the guest printed on host I, in order.
counts() { # I
	tr -d '\r' <"$(host_dir "$1")/$name/console.log" 2>/dev/null |
		sed -n 's/^count \([0-9]*\)$/\1/p'
}

# Waits (3 minutes at most: QEMU emulates, on a busy machine) until the guest
# on host I has counted to N.
wait_count() { # I N
	local c
	for _ in $(seq 900); do
		c=$(counts "$1" | tail -n 1)
		[ -n "$c" ] && [ "$c" -ge "$2" ] && return 0
		sleep 0.2
	done
	echo "count $2 not reached on host $1; its console ends:"
	tail -n 5 "$(host_dir "$1")/$name/console.log"
	return 1
}

# The definition of the guest on host 1 as host 2 is to have it, its files
# there: the live one, or with --inactive the persistent one.
dest_xml() { # [--inactive]
	host_virsh 1 dumpxml --migratable "$@" "$name" |
		sed "s|$(host_dir 1)/$name/|$(host_dir 2)/$name/|g"
}

# Runs virsh migrate on host 1's libvirtd: the guest moves to host 2's with
# its disk's top layer, host 1's libvirtd reaching host 2's by itself.
migrate() { # [virsh migrate options...]
	dest_xml >"$BATS_TEST_TMPDIR/live.xml"
	dest_xml --inactive >"$BATS_TEST_TMPDIR/persistent.xml"
	host_virsh 1 migrate --live --p2p --persistent --undefinesource --copy-storage-inc \
		--xml "$BATS_TEST_TMPDIR/live.xml" --persistent-xml "$BATS_TEST_TMPDIR/persistent.xml" \
		"$@" "$name" "$(host_libvirt_uri 2)"
}

host_uuid() { # I
	host_virsh "$1" capabilities | sed -n 's|^ *<uuid>\(.*\)</uuid>$|\1|p' | head -n 1
}

@test "each host's libvirtd answers with a host UUID of its own, and sees only its own domains" {
	machine=$(virsh -c qemu:///system capabilities | sed -n 's|^ *<uuid>\(.*\)</uuid>$|\1|p' | head -n 1)
	h1=$(host_uuid 1)
	h2=$(host_uuid 2)
	[ -n "$h1" ]
	[ -n "$h2" ]
	[ "$h1" != "$h2" ]
	[ "$h1" != "$machine" ]
	[ "$h2" != "$machine" ]
	# The UUID is the one in the host's own libvirtd.conf.
	grep -qx "host_uuid = \"$h1\"" "$(host_dir 1)/libvirt/etc/libvirtd.conf"

	guest_files 1
	guest_define 1
	[ "$(host_virsh 1 list --all --uuid)" = "$uuid" ]
	[ -z "$(host_virsh 2 list --all --uuid)" ]
	run virsh -c qemu:///system list --all --uuid
	[ "$status" -eq 0 ]
	[[ $output != *"$uuid"* ]]
	# Within the host, the machine's configuration and sockets are out of
	# sight, and the host's are out of the machine's.
	[ "$(host_run 1 ls /etc/libvirt/qemu)" = "$name.xml" ]
	[ -e "$(host_dir 1)/libvirt/etc/qemu/$name.xml" ]
	[ ! -e "/etc/libvirt/qemu/$name.xml" ]
	[ "$(host_run 1 stat -f -c %T /run/libvirt)" = tmpfs ]
	[ "$(host_run 1 stat -c %d:%i /run/libvirt/libvirt-sock)" != "$(stat -c %d:%i /run/libvirt/libvirt-sock)" ]
}

@test "a running guest moves live to host 2 with its disk's top layer, and counts on there" {
	guest_files 1
	guest_files 2 empty
	guest_define 1
	host_virsh 1 -q start "$name" >/dev/null
	wait_count 1 3
	before=$(counts 1 | tail -n 1)
	run migrate
	[ "$status" -eq 0 ]

	# Gone from host 1, its QEMU with it; running and persistent on host 2,
	# on host 2's files.
	[ -z "$(host_virsh 1 list --all --name)" ]
	run host_run 1 pgrep qemu-system
	[ "$status" -eq 1 ]
	[ "$(host_virsh 2 domstate "$name")" = running ]
	[ "$(host_virsh 2 dominfo "$name" | awk '/^Persistent:/ { print $2 }')" = yes ]
	for x in "" --inactive; do
		run host_virsh 2 dumpxml $x "$name"
		[[ $output == *"<source file='$(host_dir 2)/$name/disk.qcow2'"* ]]
		[[ $output != *"$(host_dir 1)"* ]]
	done
	[ -z "$(virsh -c qemu:///system list --all --uuid | grep -x "$uuid")" ]

	# It went on from where it was: its console there starts past the count
	# seen here, and goes on.
	wait_count 2 $((before + 3))
	[ "$(counts 2 | head -n 1)" -gt "$before" ]
	[ "$(counts 2 | grep -cx 1)" = 0 ]

	# Only the top layer came: the 0x22 written here, over host 2's own
	# backing image.
	disk=$(host_dir 2)/$name/disk.qcow2
	qemu-io -r -U -f qcow2 -c "read -P 0x11 0 1M" -c "read -P 0x22 1M 1M" "$disk" >/dev/null
	run qemu-img map -U --output=json -f qcow2 "$disk"
	[ "$(jq -c '[.[] | select(.data) | [.start, .length, .depth]]' <<<"$output")" = "[[0,1048576,1],[1048576,1048576,0]]" ]
}

@test "host 2's libvirtd killed mid-migration: the guest runs on at host 1, nothing stays on host 2, and a retry moves it" {
	guest_files 1
	guest_files 2 empty
	guest_define 1
	host_virsh 1 -q start "$name" >/dev/null
	wait_count 1 3
	# At 1 MiB/s, its memory takes tens of seconds to move: kill host 2's
	# libvirtd once some of it has.
	migrate --bandwidth 1 >"$BATS_TEST_TMPDIR/migrate.out" 2>&1 3>&- &
	pid=$!
	for _ in $(seq 300); do
		host_virsh 1 domjobinfo "$name" 2>/dev/null | grep -q '^Memory processed: *[1-9]' && break
		sleep 0.2
	done
	kill -0 "$pid"
	[ "$(host_virsh 2 list --all --name)" = "$name" ]
	host_libvirtd_kill 2
	status=0
	wait "$pid" || status=$?
	[ "$status" -eq 1 ]
	cat "$BATS_TEST_TMPDIR/migrate.out"
	grep -q '^error: ' "$BATS_TEST_TMPDIR/migrate.out"

	# Host 1 runs it still, defined as before, and it counts on.
	[ "$(host_virsh 1 domstate "$name")" = running ]
	[ "$(host_virsh 1 dominfo "$name" | awk '/^Persistent:/ { print $2 }')" = yes ]
	now=$(counts 1 | tail -n 1)
	wait_count 1 $((now + 2))

	# Host 2's libvirtd, started again, has nothing, nor any QEMU.
	host_libvirtd_start 2
	[ -z "$(host_virsh 2 list --all --name)" ]
	run host_run 2 pgrep qemu-system
	[ "$status" -eq 1 ]

	# Nothing stands in the way of another try.
	before=$(counts 1 | tail -n 1)
	run migrate
	[ "$status" -eq 0 ]
	[ -z "$(host_virsh 1 list --all --name)" ]
	[ "$(host_virsh 2 domstate "$name")" = running ]
	wait_count 2 $((before + 2))
}

# Last: it takes the hosts down.
@test "host_kill ends a host's libvirtd and guests, and hosts_teardown leaves nothing running or mounted" {
	guest_files 1
	guest_define 1
	host_virsh 1 -q start "$name" >/dev/null
	run host_run 1 pgrep -c 'libvirtd|virtlogd|qemu-system'
	[ "$output" = 3 ]
	host_kill 1
	[ -z "$(ip netns pids "$(host_ns 1)")" ]
	run host_virsh 2 list --all --name
	[ "$status" -eq 0 ]

	prefix=$HOSTS_PREFIX$HOSTS_ID-
	dir=$HOSTS_DIR
	hosts_teardown
	run ip netns list
	[[ $output != *"$prefix"* ]]
	run pgrep -f -- "$dir"
	[ "$status" -eq 1 ]
	run grep -ls -- "$dir" /proc/[0-9]*/mountinfo
	[ -z "$output" ]
	# The machine's libvirtd goes on as before.
	run virsh -c qemu:///system list --all --uuid
	[ "$status" -eq 0 ]
	[[ $output != *"$uuid"* ]]
}
