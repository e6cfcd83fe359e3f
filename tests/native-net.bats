#!/usr/bin/env bats
# User-mode networking on the native VMM (hv-svm or hv-vtx, whichever matches this
# CPU): the net test kernel leases its address from slirp's DHCP server and serves one
# line on TCP port 80, which the host reaches through a forwarded port of 127.0.0.1.

load lib/common
load lib/native

teardown() {
	native_teardown
	[ -z "${holder:-}" ] || kill "$holder" 2>/dev/null || true
	[ -z "${ns:-}" ] || ip netns del "$ns" 2>/dev/null || true
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

@test "a guest on a user NIC leases 10.0.2.15 and a forwarded host port reaches it" {
	port=$(free_port)
	vi -q create --hv "$hv" --kernel "$guest/net.bzImage" --memory 64M --nic user \
		--forward "127.0.0.1:$port:80" w1
	run -0 vi start w1
	wait_console w1 "net: lease 10.0.2.15 from 10.0.2.2"
	wait_console w1 "net: listening on port 80"
	exec {conn}<>"/dev/tcp/127.0.0.1/$port"
	read -r -t 30 line <&"$conn"
	echo bye >&"$conn"
	exec {conn}>&-
	[ "$line" = "hello from the guest" ]
	wait_console w1 "net: connection from 10.0.2.2 port "
	wait_console w1 "net: received 4 bytes"
	wait_console w1 "net: connection closed"
	# Stopped, the VM lets its port go at once: it starts again on the same one.
	run -0 vi stop --force w1
	run -0 vi start w1
	wait_console w1 "net: listening on port 80"
	exec {conn}<>"/dev/tcp/127.0.0.1/$port"
	read -r -t 30 line <&"$conn"
	exec {conn}>&-
	[ "$line" = "hello from the guest" ]
}

@test "a forward of a host port taken since create fails the start with exit 5, naming it" {
	port=$(free_port)
	vi -q create --hv "$hv" --kernel "$guest/net.bzImage" --memory 64M --nic user \
		--forward "$port:80" b1
	python3 -m http.server --bind 127.0.0.1 "$port" >/dev/null 2>&1 &
	holder=$!
	for _ in $(seq 100); do
		ss -Hltn "sport = :$port" | grep -q . && break
		sleep 0.1
	done
	run -5 vi start b1
	[ "$output" = "vi: error: host port $port is in use" ]
	[ "$(vi show --json b1 | jq -r .vm.state)" = stopped ]
	[ ! -e "$VI_HOME/vms/b1/run/pid" ]
}

@test "a guest that ignores its user NIC runs as without one" {
	vi -q create --hv "$hv" --kernel "$guest/counter.bzImage" --cmdline stop=20 --memory 64M \
		--nic user c1
	run -0 vi start c1
	wait_console c1 "counter: done at 20"
}

@test "the devices kernel on a user NIC: the gateway answers its ARP" {
	vi -q create --hv "$hv" --kernel "$guest/devices.bzImage" --memory 64M --nic user d1
	run -0 vi start d1
	wait_console d1 "devices: " 30
	grep -q "net: arp reply from 10.0.2.2" "$VI_HOME/vms/d1/run/console.log"
	grep -q "devices: ok" "$VI_HOME/vms/d1/run/console.log"
}

@test "a nat NIC joins its libvirt network's bridge, refused while there is none" {
	command -v ip >/dev/null || skip "no ip(8)"
	ns=vi-test-$$-$BATS_TEST_NUMBER
	ip netns add "$ns" || skip "cannot make network namespaces here"
	# A network libvirt does not know: its bridge is virbr0, here one of the namespace's.
	vi -q create --hv "$hv" --kernel "$guest/devices.bzImage" --memory 64M \
		--nic "nat:vi-test-$$" n1
	run -5 ip netns exec "$ns" env PATH="$PATH" VI_HOME="$VI_HOME" vi start n1
	[ "$output" = "vi: error: network card 0: libvirt network 'vi-test-$$' is not started: there is no bridge 'virbr0'" ]
	ip -n "$ns" link add virbr0 type bridge
	ip -n "$ns" addr add 10.0.2.2/24 dev virbr0
	ip -n "$ns" link set virbr0 up
	run -0 ip netns exec "$ns" env PATH="$PATH" VI_HOME="$VI_HOME" vi start n1
	wait_console n1 "devices: " 30
	grep -q "net: arp reply from 10.0.2.2" "$VI_HOME/vms/n1/run/console.log"
	grep -q "devices: ok" "$VI_HOME/vms/n1/run/console.log"
}
