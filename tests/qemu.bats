#!/usr/bin/env bats
# hv-qemu through the vi command, against the real libvirtd that scripts/setup
# starts: Debian's stock kernel and a busybox initramfs booted under QEMU.

load lib/common

setup_file() {
	# QEMU runs as libvirt-qemu: every directory on the way must let it pass.
	export VI_QEMU_WORK=$(mktemp -d /var/tmp/vi-qemu-test.XXXXXX)
	chmod 0711 "$VI_QEMU_WORK"
	export KERNEL=$(printf '%s\n' /boot/vmlinuz-* | sort -V | tail -n 1)
	"$VI_TOP/tests/lib/mkinitramfs" -o "$VI_QEMU_WORK/initrd.gz" --marker VI-QEMU-READY \
		--kernel-version "${KERNEL#/boot/vmlinuz-}"
	# A guest that leases an address on eth0 and serves a page on port 80.
	"$VI_TOP/tests/lib/mkinitramfs" -o "$VI_QEMU_WORK/net.gz" --marker VI-QEMU-READY \
		--kernel-version "${KERNEL#/boot/vmlinuz-}" --net
	# A guest whose progress lives in its memory: it counts on its console.
	"$VI_TOP/tests/lib/mkinitramfs" -o "$VI_QEMU_WORK/count.gz" --marker VI-QEMU-READY \
		--kernel-version "${KERNEL#/boot/vmlinuz-}" \
		--run 'i=0; while :; do i=$((i+1)); echo "count $i"; usleep 100000; done'
}

teardown_file() {
	rm -rf "$VI_QEMU_WORK"
}

setup() {
	common_setup
	export VI_HOME=$VI_QEMU_WORK/home-$BATS_TEST_NUMBER
	# libvirt names are per host: keep this run's apart from any other.
	name=vi-test-$$-$BATS_TEST_NUMBER
}

teardown() {
	for vm in $(vi list --json 2>/dev/null | jq -r '.vms[].name'); do
		vi -q destroy --force "$vm" || true
	done
}

create() { # NAME [options...]
	local n=$1
	shift
	vi create --hv qemu --kernel "$KERNEL" --initrd "$VI_QEMU_WORK/initrd.gz" \
		--cmdline console=ttyS0 --memory 256M "$@" "$n"
}

wait_marker() { # NAME [timeout]
	local log=$VI_HOME/vms/$1/run/console.log
	for _ in $(seq "${2:-60}"); do
		grep -q VI-QEMU-READY "$log" 2>/dev/null && return 0
		sleep 1
	done
	echo "no marker in $log:"
	cat "$log" 2>/dev/null | tail -20
	return 1
}

# A TCP port on 127.0.0.1 that nothing listens on.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		[ -z "$(ss -Htln "sport = :$p")" ] && break
	done
	echo "$p"
}

# What the guest's web server answers through 127.0.0.1:PORT.
http_get() { # PORT
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'GET / HTTP/1.0\r\n\r\n' >&3
	timeout 20 cat <&3
	exec 3<&-
}

# Forwards of the VM's first NIC, as vm.yaml records them.

@test "create --start boots the stock kernel to its marker; stop, start, destroy" {
	run -0 create "$name" --start
	[ "$output" = "created VM '$name' on qemu: 1 vCPU, 256M, running" ]
	wait_marker "$name"
	run -0 vi list
	[[ ${lines[1]} =~ ^$name\ +qemu\ +running\ +1\ +256M ]]
	[ "$(virsh -q domstate "$name")" = running ]

	# Graceful: the guest's init powers off on the ACPI power button.
	run -0 vi stop --timeout 60 "$name"
	[ "$output" = "stopped VM '$name'" ]
	[ "$(vi show --json "$name" | jq -r .vm.state)" = stopped ]

	# A second boot starts a fresh console log.
	run -0 vi start "$name"
	[ "$output" = "started VM '$name'" ]
	wait_marker "$name"
	[ "$(grep -c VI-QEMU-READY "$VI_HOME/vms/$name/run/console.log")" = 1 ]
	run -5 vi start "$name"
	[ "$output" = "vi: error: VM '$name' is already running" ]

	run -0 vi stop --force "$name"
	run -0 vi destroy "$name"
	[ ! -e "$VI_HOME/vms/$name" ]
	run virsh -q dominfo "$name"
	[ "$status" -ne 0 ]
}

@test "the console answers, and detaches on the escape key" {
	create "$name" --start --cpus 2 --max-cpus 4
	wait_marker "$name"
	# Type a command, wait (on a loaded machine, as long as it takes) for its
	# answer in the console log, then detach.
	local log=$VI_HOME/vms/$name/run/console.log
	run -0 bash -c "{ sleep 1; printf 'echo CONSOLE-\$((6*7)) \$(grep -c ^processor /proc/cpuinfo)\r'
		for _ in \$(seq 120); do grep -q 'CONSOLE-42 2' '$log' && break; sleep 0.5; done
		printf '\x1d'; } | vi console '$name'"
	[[ $output == *"CONSOLE-42 2"* ]]
	# A running VM can be destroyed straight away.
	run -0 vi destroy "$name"
	run virsh -q dominfo "$name"
	[ "$status" -ne 0 ]
}

@test "show reports the live figures of a running guest" {
	create "$name" --start --cpus 2 --max-cpus 4 --max-memory 512M
	run -0 vi show --json "$name"
	[ "$(jq -r .vm.state <<<"$output")" = running ]
	[ "$(jq -r .vm.max_cpus <<<"$output")" = 4 ]
	[ "$(jq -r .vm.stats.vcpus <<<"$output")" = 2 ]
	run -0 vi destroy "$name"
}

@test "a duplicate name on the libvirt host is a conflict that leaves no VM behind" {
	virsh -q define <(virsh -q dumpxml --inactive 2>/dev/null || true) 2>/dev/null || true
	create "$name"
	export VI_HOME=$VI_QEMU_WORK/other-$BATS_TEST_NUMBER
	run -5 create "$name"
	[[ $output == "vi: error: "*"$name"*"already exists"* ]]
	[ -z "$(ls "$VI_HOME/vms")" ]
	export VI_HOME=$VI_QEMU_WORK/home-$BATS_TEST_NUMBER
	run -0 vi destroy "$name"
}

@test "bad URIs and an unreachable libvirtd give one clear error" {
	run -1 create "$name" --connect 'not a uri'
	[ "$output" = "vi: error: backend 'qemu' at 'not a uri': no QEMU host: invalid libvirt URI 'not a uri'" ]
	[ "${#lines[@]}" -eq 1 ]
	run -1 create "$name" --connect 'qemu+unix:///system?socket=/nonexistent/sock'
	[[ $output == "vi: error: "*"cannot connect to 'qemu+unix:///system?socket=/nonexistent/sock'"* ]]
	[ "${#lines[@]}" -eq 1 ]
	[ -z "$(ls "$VI_HOME/vms" 2>/dev/null)" ]
}

@test "a missing kernel is not found, and nothing is defined" {
	run -3 vi create --hv qemu --kernel /nonexistent/vmlinuz "$name"
	[ "$output" = "vi: error: kernel '/nonexistent/vmlinuz': No such file or directory" ]
	run virsh -q dominfo "$name"
	[ "$status" -ne 0 ]
}

@test "a definition a killed create left on libvirt is forgotten by the next command" {
	create "$name"
	# As a kill between the definition and the rename into the store leaves it.
	mv "$VI_HOME/vms/$name" "$VI_HOME/vms/.staging/$name.99999999"
	virsh -q dominfo "$name" >/dev/null
	run -0 vi list
	run virsh -q dominfo "$name"
	[ "$status" -ne 0 ]
	[ -z "$(ls -A "$VI_HOME/vms/.staging")" ]
	# The name is free again.
	run -0 create "$name"
	run -0 vi destroy "$name"
}

@test "a VM its backend lost is destroyed without --force" {
	create "$name"
	virsh -q undefine "$name" >/dev/null
	run -0 vi destroy "$name"
	[ "$output" = "destroyed VM '$name'" ]
	[ ! -e "$VI_HOME/vms/$name" ]
}

@test "a libvirt network must exist at create; an inactive one is started with the VM" {
	local net=vitn$$
	run -3 create "$name" --nic network:nosuch-$$
	[ "$output" = "vi: error: no libvirt network 'nosuch-$$' on 'qemu:///system' for '$name'" ]
	[ -z "$(ls "$VI_HOME/vms")" ]
	run virsh -q dominfo "$name"
	[ "$status" -ne 0 ]
	# An isolated network: a bridge with no address, nothing routed.
	virsh -q net-define <(echo "<network><name>$net</name><bridge name='$net'/></network>") >/dev/null
	run -0 create "$name" --nic "network:$net" --start
	[ "${lines[0]}" = "started libvirt network '$net'" ]
	[ "$(virsh -q net-info "$net" | awk '/^Active:/ { print $2 }')" = yes ]
	run -0 vi destroy "$name"
	virsh -q net-destroy "$net" >/dev/null
	virsh -q net-undefine "$net" >/dev/null
}

@test "the VM's recorded connection is used by later verbs, --connect overrides it" {
	create "$name" --connect qemu:///system
	[ "$(vi show --json "$name" | jq -r .vm.connect)" = qemu:///system ]
	run -0 vi show --connect qemu:///system "$name"
	run -1 vi show --json --connect 'qemu+unix:///system?socket=/nonexistent/sock' "$name"
	[[ $output == "vi: error: backend 'qemu' of VM '$name' is not usable at 'qemu+unix:///system?socket=/nonexistent/sock': "* ]]
	run -0 vi destroy "$name"
}

@test "a user NIC leases 10.0.2.15 and a forwarded host port reaches the guest's server" {
	local port
	port=$(free_port)
	run -0 create "$name" --initrd "$VI_QEMU_WORK/net.gz" --forward "$port:80"
	run -0 vi start "$name"
	[ "$output" = "started VM '$name'" ]
	wait_marker "$name"
	grep -q "init: eth0 has 10.0.2.15" "$VI_HOME/vms/$name/run/console.log"
	run -0 http_get "$port"
	[[ $output == "HTTP/1.1 200 OK"* ]]
	[[ $output == *VI-GUEST-WEB* ]]
	run -0 vi destroy --force "$name"
	# The forward went with the VM.
	run ! http_get "$port"
}

@test "a forward from a host port in use fails start, naming the port, and leaves nothing running" {
	local port
	port=$(free_port)
	create "$name" --initrd "$VI_QEMU_WORK/net.gz" --forward "$port:80"
	busybox nc -l -p "$port" </dev/null >/dev/null 2>&1 &
	local holder=$!
	for _ in $(seq 50); do
		[ -n "$(ss -Htln "sport = :$port")" ] && break
		sleep 0.1
	done
	run vi start "$name"
	kill "$holder"
	[ "$status" -eq 5 ]
	[ "$output" = "vi: error: host port $port is in use" ]
	[ "$(virsh -q domstate "$name")" = "shut off" ]
	[ "$(vi show --json "$name" | jq -r .vm.state)" = stopped ]
	run -0 vi destroy "$name"
}

@test "a nat NIC starts libvirt's default network, and the guest leases an address on it" {
	local active autostart
	active=$(virsh -q net-info default 2>/dev/null | awk '/^Active:/ { print $2 }')
	autostart=$(virsh -q net-info default 2>/dev/null | awk '/^Autostart:/ { print $2 }')
	run -0 create "$name" --initrd "$VI_QEMU_WORK/net.gz" --nic nat
	run -0 vi start "$name"
	[ "$(virsh -q net-info default | awk '/^Active:/ { print $2 }')" = yes ]
	[ "$(virsh -q net-info default | awk '/^Autostart:/ { print $2 }')" = yes ]
	[ "$(virsh -q domiflist "$name" | awk '{ print $2 " " $3 }')" = "network default" ]
	wait_marker "$name"
	grep -aq "init: eth0 has 192\.168\.122\." "$VI_HOME/vms/$name/run/console.log"
	run -0 vi destroy --force "$name"
	# As it was found.
	if [ -z "$active" ]; then
		virsh -q net-destroy default >/dev/null
		virsh -q net-undefine default >/dev/null
	elif [ "$active" = no ]; then
		virsh -q net-destroy default >/dev/null
	fi
	[ "$autostart" != no ] || virsh -q net-autostart --disable default >/dev/null
}

# The first or last count a count.gz guest printed whole on its console since
# its QEMU started (a restore starts a fresh log): count_at NAME first|last
count_at() {
	sed -n 's/^.*count \([0-9]*\)\r$/\1/p' "$VI_HOME/vms/$1/run/console.log" 2>/dev/null |
		if [ "$2" = first ]; then head -n 1; else tail -n 1; fi
}

wait_count() { # NAME N: until the guest has counted past N
	local c
	for _ in $(seq 120); do
		c=$(count_at "$1" last)
		[ -n "$c" ] && [ "$c" -gt "$2" ] && return 0
		sleep 0.5
	done
	echo "no count past $2 on the console of $1"
	return 1
}

@test "a running guest's snapshot holds its memory, and checkout resumes it through libvirt" {
	create "$name" --initrd "$VI_QEMU_WORK/count.gz" --start
	wait_marker "$name"
	wait_count "$name" 3
	local before after first
	before=$(count_at "$name" last)
	run -0 vi snapshot create "$name" s1
	after=$(count_at "$name" last)
	[ "$(vi snapshot show --json "$name" s1 | jq -r .snapshot.memory)" = true ]
	[ "$(virsh -q domstate "$name")" = running ]
	wait_count "$name" $((after + 2))

	run -0 vi snapshot checkout --discard "$name" s1
	[ "$output" = "VM '$name' is at snapshot 's1', running" ]
	wait_count "$name" 0
	# It goes on from the count it was saved at, and does not boot again.
	first=$(count_at "$name" first)
	[ "$first" -gt "$before" ]
	[ "$first" -le $((after + 1)) ]
	! grep -q VI-QEMU-READY "$VI_HOME/vms/$name/run/console.log" || false
	virsh -q dominfo "$name" | grep -q '^Persistent: *yes'
	run -0 vi destroy --force "$name"
}
