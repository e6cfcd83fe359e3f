#!/usr/bin/env bats
# User-mode networking on the native VMM (hv-svm or hv-vtx, whichever matches this
# CPU): the net test kernel leases its address from slirp's DHCP server and serves one
# line on TCP port 80, which the host reaches through a forwarded port of 127.0.0.1.

load lib/common
load lib/native

teardown() {
	for home in ${second:+"$second"} "$VI_HOME"; do
		for env in $(vi --home "$home" env status --json 2>/dev/null | jq -r '.envs[].name'); do
			vi --home "$home" -q env down "$env" || true
		done
	done
	native_teardown
	ip link del "v$$a" 2>/dev/null || true
	[ -z "${br:-}" ] || [ ! -e "/sys/class/net/$br/bridge" ] || [ "$br" != "vib$$" ] || ip link del "$br"
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

# Template netk: the net test kernel, for environments' machines.
net_template() {
	cp "$guest/net.bzImage" .
	cat >netk.yaml <<-E
		name: netk
		version: "1"
		description: the net test kernel
		memory: 64M
		kernel: $PWD/net.bzImage
		initrd: none
		disks:
		  - size: 1M
	E
	vi -q template build netk.yaml
}

# An environment of netk machines on two private networks.
net_env() { # ENV-NAME
	net_template
	cat >vi-env.yaml <<-E
		name: $1
		networks: [backend, other]
		machines:
		  db:
		    template: netk
		    hv: $hv
		    networks: [backend]
		    ready: none
		  web:
		    template: netk
		    hv: $hv
		    count: 2
		    networks: [backend]
		    depends: [db]
		    ready: none
		  lone:
		    template: netk
		    hv: $hv
		    networks: [other]
		    ready: none
	E
}

# The bridge of network NET of environment ENV: env_bridge ENV NET
env_bridge() {
	cat "$VI_HOME/nets/vi-$1-$2/bridge"
}

# Reads what the guest at ADDRESS says on port 80, from namespace $ns.
hello_from() {
	ip netns exec "$ns" timeout 10 bash -c \
		"exec 3<>/dev/tcp/$1/80 && read -r -t 5 line <&3 && echo \"\$line\""
}

@test "an environment's private network of native VMs: a bridge, addresses by DHCP, nothing routed" {
	command -v ip >/dev/null || skip "no ip(8)"
	ns=vi-test-$$-$BATS_TEST_NUMBER
	ip netns add "$ns" || skip "cannot make network namespaces here"
	net_env nv$$
	run -0 vi env up
	cidr=$(vi env status --json nv$$ | jq -r '.envs[0].networks[] | select(.name == "backend") | .cidr')
	other=$(vi env status --json nv$$ | jq -r '.envs[0].networks[] | select(.name == "other") | .cidr')
	[ "$(vi env status --json nv$$ | jq -r '.envs[0].networks[0].hv')" = "$hv" ]
	[ "$cidr" != "$other" ]
	net=${cidr%.0/24}
	for vm in nv$$-db nv$$-web-1 nv$$-web-2; do
		wait_console "$vm" "net: listening on port 80"
	done
	wait_console nv$$-lone "net: lease ${other%.0/24}.10 from ${other%.0/24}.1"
	# Each VMM answered its own guest's DHCP, one address each of the network's range.
	leased=$(grep -ho "net: lease $net\.[0-9]* from $net\.1" "$VI_HOME"/vms/nv$$-{db,web-1,web-2}/run/console.log | sort -u | wc -l)
	[ "$leased" = 3 ]
	run -0 vi env status nv$$
	[[ "$output" == *"nv$$-db "*"running   backend $net."* ]]
	# The host is the range's .1 on the bridge (no IPv6), routes nothing from it, and
	# reaches the guests there.
	br=$(env_bridge nv$$ backend)
	[ -d "/sys/class/net/$br/bridge" ]
	[ "$(ip -br addr show dev "$br" | awk '{print $3, $4}')" = "$net.1/24 " ]
	[ "$(cat "/proc/sys/net/ipv4/conf/$br/forwarding")" = 0 ]
	[[ "$(ip route get "$net.10")" == *"dev $br"* ]]
	addr=$(vi env status --json nv$$ | jq -r ".envs[0].machines[] | select(.vm == \"nv$$-db\") | .addresses.backend")
	exec {conn}<>"/dev/tcp/$addr/80"
	read -r -t 30 line <&"$conn"
	exec {conn}>&-
	[ "$line" = "hello from the guest" ]
	# A wire of the test's own on the bridge reaches every guest on it, and none of the
	# other network's.
	ip link add "v$$a" type veth peer name "v$$b"
	ip link set "v$$b" netns "$ns"
	ip link set "v$$a" master "$br" up
	ip -n "$ns" addr add "$net.200/24" dev "v$$b"
	ip -n "$ns" link set "v$$b" up
	for vm in db web-1 web-2; do
		addr=$(vi env status --json nv$$ | jq -r ".envs[0].machines[] | select(.vm == \"nv$$-$vm\") | .addresses.backend")
		[[ "$addr" == "$net".* ]]
		[ "$(hello_from "$addr")" = "hello from the guest" ]
	done
	ip -n "$ns" addr add "${other%.0/24}.200/24" dev "v$$b"
	run hello_from "${other%.0/24}.10"
	[ "$status" -ne 0 ]
	# The host lost the bridge (as in a reboot): starting a machine makes it again, and
	# the guest gets the address it had.
	first=$(grep -ho "net: lease [0-9.]*" "$VI_HOME/vms/nv$$-db/run/console.log")
	run -0 vi stop --force nv$$-db
	ip link del "$br"
	run -0 vi start nv$$-db
	[ -d "/sys/class/net/$br/bridge" ]
	wait_console nv$$-db "net: listening on port 80"
	[ "$(grep -ho "net: lease [0-9.]*" "$VI_HOME/vms/nv$$-db/run/console.log")" = "$first" ]
	# Down takes the bridges and the networks' records with the machines.
	run -0 vi env down nv$$
	[ ! -e "/sys/class/net/$br" ]
	[ ! -e "$VI_HOME/nets/vi-nv$$-backend" ]
	[ ! -e "$VI_HOME/nets/vi-nv$$-other" ]
	[ "$(vi list --json | jq '.vms | length')" = 0 ]
}

@test "a clone of an environment of native VMs gets networks of its own" {
	net_env nc$$
	run -0 vi env up
	run -0 vi env clone nc$$ nd$$
	a=$(vi env status --json nc$$ | jq -r '.envs[0].networks[] | select(.name == "backend") | .cidr')
	b=$(vi env status --json nd$$ | jq -r '.envs[0].networks[] | select(.name == "backend") | .cidr')
	[ "$a" != "$b" ]
	[ "$(env_bridge nc$$ backend)" != "$(env_bridge nd$$ backend)" ]
	wait_console nd$$-web-2 "net: lease ${b%.0/24}."
	wait_console nc$$-web-2 "net: lease ${a%.0/24}."
	# Another store's environment of the same name has a bridge of its own.
	second=$BATS_TEST_TMPDIR/second
	vi --home "$second" -q template build netk.yaml
	vi --home "$second" -q env up
	other=$(cat "$second/nets/vi-nc$$-backend/bridge")
	[ -d "/sys/class/net/$other/bridge" ]
	[ "$other" != "$(env_bridge nc$$ backend)" ]
	vi --home "$second" -q env down nc$$
	[ ! -e "/sys/class/net/$other" ]
	run -0 vi env down nd$$
	run -0 vi env down nc$$
	[ ! -e "$VI_HOME/nets" ] || [ -z "$(ls "$VI_HOME/nets")" ]
}

@test "an environment whose forward's port is taken stops in one line, keeps what it made, and up resumes" {
	net_template
	port=$(free_port)
	cat >vi-env.yaml <<-E
		name: pt$$
		networks: [backend]
		machines:
		  db:
		    template: netk
		    hv: $hv
		    networks: [backend]
		    ready: none
		  web:
		    template: netk
		    hv: $hv
		    networks: [user]
		    forward: ["$port:80"]
		    depends: [db]
		    ready: none
	E
	python3 -m http.server --bind 127.0.0.1 "$port" >/dev/null 2>&1 &
	holder=$!
	for _ in $(seq 100); do
		ss -Hltn "sport = :$port" | grep -q . && break
		sleep 0.1
	done
	run -5 vi env up
	[ "${lines[-1]}" = "vi: error: machine 'web' (VM 'pt$$-web'): host port $port is in use" ]
	run -0 vi env status --json pt$$
	[ "$(jq -r '[.envs[0].machines[].vm] | join(",")' <<<"$output")" = "pt$$-db" ]
	kill "$holder"
	wait "$holder" 2>/dev/null || true
	holder=
	run -0 vi env up
	grep -Eq "^pt$$-db +running, unchanged" <<<"$output"
	grep -Eq "^pt$$-web +created" <<<"$output"
	wait_console pt$$-web "net: listening on port 80"
	exec {conn}<>"/dev/tcp/127.0.0.1/$port"
	read -r -t 30 line <&"$conn"
	exec {conn}>&-
	[ "$line" = "hello from the guest" ]
	run -0 vi env down pt$$
	[ "$(vi list --json | jq '.vms | length')" = 0 ]
}

@test "a bridge NIC joins an existing bridge, refused while there is none" {
	command -v ip >/dev/null || skip "no ip(8)"
	br=vib$$
	vi -q create --hv "$hv" --kernel "$guest/counter.bzImage" --cmdline stop=1000 --memory 64M \
		--nic "bridge:$br" b1
	run -5 vi start b1
	[ "$output" = "vi: error: network card 0: there is no bridge '$br'" ]
	ip link add "$br" type bridge
	run -0 vi start b1
	[ -n "$(ls "/sys/class/net/$br/brif")" ]
	vi -q destroy --force b1
	[ -z "$(ls "/sys/class/net/$br/brif")" ]
	ip link del "$br"
}
