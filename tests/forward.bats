#!/usr/bin/env bats
# The way into a guest, as the host side sees it: the default user NIC and its
# SSH forward, --forward, vi forward, the seed every machine gets, and the
# errors of vi ssh, exec and cp. The fixture backend records the forwards it
# is given; guests that answer are in qemu-net.bats.

load lib/common

setup() {
	common_setup
	use_fixture_plugins
	cd "$BATS_TEST_TMPDIR"
	echo "not a kernel" >vmlinuz
}

# A port nobody listens on now, and a listener the test holds on another.
hold_port() {
	python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(); time.sleep(120)' "$1" &
	holder=$!
	for _ in $(seq 50); do
		ss -ltn "sport = :$1" | grep -q LISTEN && return 0
		sleep 0.1
	done
	return 1
}
teardown() { [ -z "${holder:-}" ] || kill "$holder" 2>/dev/null || true; }

fwd() { vi forward list --json "$1" | jq -r '.forwards[] | "\(.host_addr):\(.host_port)>\(.guest_port)/\(.proto)"' | sort; }

@test "a VM gets a user NIC whose SSH port is forwarded from a free host port" {
	run -0 vi create --hv fixture --kernel vmlinuz web
	[ "$(vi show --json web | jq -r '.vm.nics | length')" = 1 ]
	[ "$(vi show --json web | jq -r '.vm.nics[0].mode')" = user ]
	port=$(vi forward list --json web | jq -r '.forwards[] | select(.guest_port == 22) | .host_port')
	[ "$port" -gt 0 ]
	[ "$(vi forward list --json web | jq -r '.forwards[0].auto')" = true ]
	run -0 vi start web
	# The backend is given the forward at start.
	grep -qx "0 tcp 127.0.0.1:$port 22" "$VI_HOME/vms/web/run/fixture-forwards"
	run -0 vi list --wide
	[[ "$output" == *"10.0.2.15  127.0.0.1:$port"* ]]
	[ "$(vi list --json | jq -r '.vms[0].ssh')" = "127.0.0.1:$port" ]
	[ "$(vi show --json web | jq -r '.vm.nics[0].address')" = 10.0.2.15 ]
}

@test "--forward adds forwards; one to port 22 replaces the default" {
	p1=$(free_port)
	run -0 vi create --hv fixture --kernel vmlinuz --forward "$p1:80" --forward 0.0.0.0:2222:22 \
		--forward "0:53/udp" web
	run -0 fwd web
	[[ "$output" == *"127.0.0.1:$p1>80/tcp"* ]]
	[[ "$output" == *"0.0.0.0:2222>22/tcp"* ]]
	[[ "$output" == *">53/udp"* ]]
	[ "$(vi forward list --json web | jq '.forwards | length')" = 3 ]
}

@test "a forward from a host port in use is refused before anything is made, naming the port" {
	p=$(free_port)
	hold_port "$p"
	run -5 vi create --hv fixture --kernel vmlinuz --forward "$p:80" web
	[ "$output" = "vi: error: host port $p is in use" ]
	[ ! -e "$VI_HOME/vms/web" ]
	[ -z "$(ls -A "$VI_HOME/vms/.staging")" ]
}

@test "a port taken after create: start fails with exit 5 for a chosen port, moves an automatic one" {
	p=$(free_port)
	run -0 vi create --hv fixture --kernel vmlinuz --forward "$p:80" web
	auto=$(vi forward list --json web | jq -r '.forwards[] | select(.auto) | .host_port')
	hold_port "$p"
	run -5 vi start web
	[ "$output" = "vi: error: host port $p is in use" ]
	[ "$(vi show --json web | jq -r .vm.state)" = stopped ]
	kill "$holder"
	wait "$holder" 2>/dev/null || true
	hold_port "$auto"
	run -0 vi start web
	now=$(vi forward list --json web | jq -r '.forwards[] | select(.auto) | .host_port')
	[ "$now" != "$auto" ]
	grep -qx "0 tcp 127.0.0.1:$now 22" "$VI_HOME/vms/web/run/fixture-forwards"
}

@test "vi forward add, list and rm on a running VM change the backend's forwards at once" {
	vi -q create --hv fixture --kernel vmlinuz --start web
	p=$(free_port)
	run -0 vi forward add web "$p:8080"
	[ "$output" = "forwarding 127.0.0.1:$p->8080/tcp on VM 'web'" ]
	grep -qx "0 tcp 127.0.0.1:$p 8080" "$VI_HOME/vms/web/run/fixture-forwards"
	run -0 vi forward list web
	[[ "${lines[0]}" == "HOST"*"GUEST"*"PROTO"*"NIC" ]]
	[[ "$output" == *"127.0.0.1:$p"*"8080"*"tcp"*"0"* ]]
	run -5 vi forward add web "$p:9"
	[ "$output" = "vi: error: VM 'web' forwards host port $p already" ]
	run -0 vi forward rm web "$p"
	! grep -q " 127.0.0.1:$p " "$VI_HOME/vms/web/run/fixture-forwards" || false
	run -3 vi forward rm web "$p"
	[ "$output" = "vi: error: VM 'web' has no forward from host port $p" ]
	# Kept in the definition: the next start has it.
	vi -q forward add web "$p:81"
	vi -q stop web
	vi -q start web
	grep -qx "0 tcp 127.0.0.1:$p 81" "$VI_HOME/vms/web/run/fixture-forwards"
}

@test "a backend that cannot change forwards live: refused while running, recorded while stopped" {
	vi -q create --hv fixture --kernel vmlinuz --start web
	echo forward_add >"$VI_HOME/vms/web/run/fixture-fail"
	run -1 vi forward add web 0:80
	[ "$output" = "vi: error: fixture was told to fail forward_add" ]
	[ "$(vi forward list --json web | jq '.forwards | length')" = 1 ]
	rm "$VI_HOME/vms/web/run/fixture-fail"
	vi -q stop web
	run -0 vi forward add web 0:80
	[[ "$output" =~ ^"forwarding 127.0.0.1:"[0-9]+"->80/tcp on VM 'web' (from its next start)"$ ]]
	[ "$(vi forward list --json web | jq '.forwards | length')" = 2 ]
}

@test "bad forwards and NIC choices are one clear line, exit 2" {
	run -2 vi create --hv fixture --kernel vmlinuz --forward 80 web
	[ "$output" = "vi: error: invalid forward '80': expected [ADDR:]HOST:GUEST[/tcp|/udp]" ]
	run -2 vi create --hv fixture --kernel vmlinuz --forward 8080:0 web
	[ "$output" = "vi: error: invalid forward '8080:0': '0' is not a port (1-65535)" ]
	run -2 vi create --hv fixture --kernel vmlinuz --forward 8080:80/sctp web
	[ "$output" = "vi: error: invalid forward '8080:80/sctp': the protocol must be tcp or udp" ]
	run -2 vi create --hv fixture --kernel vmlinuz --forward localhost:8080:80 web
	[ "$output" = "vi: error: invalid forward 'localhost:8080:80': 'localhost' is not an IPv4 address" ]
	run -2 vi create --hv fixture --kernel vmlinuz --nic none --forward 8080:80 web
	[ "$output" = "vi: error: --forward needs a user NIC (--nic user)" ]
	run -2 vi create --hv fixture --kernel vmlinuz --nic none --nic user web
	[ "$output" = "vi: error: --nic none goes alone" ]
	run -2 vi create --hv fixture --kernel vmlinuz --nic user:x web
	[ "$output" = "vi: error: invalid --nic 'user:x': user takes no name" ]
	run -2 vi create --hv fixture --kernel vmlinuz --forward 7001:80 --forward 7001:81 web
	[ "$output" = "vi: error: VM 'web' forwards host port 7001 twice" ]
	[ ! -e "$VI_HOME/vms/web" ]
}

@test "a VM without network: no NIC, and vi ssh says why with exit 4" {
	vi -q create --hv fixture --kernel vmlinuz --nic none --user ci --start web
	[ "$(vi show --json web | jq -r '.vm.nics | length')" = 0 ]
	run -4 vi ssh web
	[ "$output" = "vi: error: VM 'web' has no network card: nothing reaches its SSH server (create it with --nic user)" ]
	run -4 vi exec web -- true
	run -4 vi cp web:/etc/hostname .
}

@test "vi ssh, exec and cp: a stopped VM is exit 5, no command is exit 2, no VM is exit 3" {
	vi -q create --hv fixture --kernel vmlinuz --user ci web
	run -5 vi ssh web
	[ "$output" = "vi: error: VM 'web' is stopped: start it first" ]
	run -5 vi exec web -- true
	run -5 vi cp ./x web:/tmp/x
	run -2 vi exec web
	[ "$output" = "vi: error: no command: vi exec web -- COMMAND [ARG...]" ]
	run -2 vi ssh web true
	[ "$output" = "vi: error: unexpected argument 'true' (a command goes after --)" ]
	run -3 vi ssh nosuch
	run -3 vi exec nosuch -- true
	run -2 vi cp a b
	[ "$output" = "vi: error: neither 'a' nor 'b' names a VM (VM:PATH)" ]
	vi -q create --hv fixture --kernel vmlinuz --user ci db
	run -2 vi cp web:/a db:/b
	[ "$output" = "vi: error: vi cp copies between the host and one VM, not two" ]
	run -2 vi cp web: .
	[ "$output" = "vi: error: no path in the VM after 'web:'" ]
}

@test "a VM made with no template nor user has no login: vi ssh says so, exit 4" {
	vi -q create --hv fixture --kernel vmlinuz --start web
	run -4 vi ssh web
	[ "$output" = "vi: error: VM 'web' has no login user: it was made neither from a template nor with --user" ]
	[ ! -e "$VI_HOME/vms/web/seed.img" ]
}

@test "--user and --ssh-key: a CIDATA seed with the user, the store's key and theirs, and a recorded host key" {
	ssh-keygen -q -t ed25519 -N '' -C alice@example -f alice
	run -0 vi create --hv fixture --kernel vmlinuz --user alice --ssh-key alice.pub db
	seed=$VI_HOME/vms/db/seed.img
	[ "$(blkid -o value -s LABEL "$seed")" = CIDATA ]
	[ "$(vi show --json db | jq -r '.vm.disks[-1].readonly')" = true ]
	[ "$(vi show --json db | jq -r .vm.user)" = alice ]
	mtype -i "$seed" ::/vi/user | grep -qx alice
	keys=$(mtype -i "$seed" ::/vi/authorized_keys)
	grep -qF "$(cut -d' ' -f1,2 "$VI_HOME/ssh/id_ed25519.pub")" <<<"$keys"
	grep -qF "$(cut -d' ' -f1,2 alice.pub)" <<<"$keys"
	# The host key in the seed is the one recorded for vi ssh.
	mtype -i "$seed" ::/vi/ssh_host_ed25519_key >hostkey
	chmod 600 hostkey
	[ "db $(ssh-keygen -y -f hostkey)" = "$(cat "$VI_HOME/vms/db/known_hosts")" ]
	mtype -i "$seed" ::/meta-data | grep -q "instance-id: $(vi show --json db | jq -r .vm.uuid)"
}

@test "bad --user, --ssh-key and --user-data leave nothing behind" {
	ssh-keygen -q -t ed25519 -N '' -f k
	run -2 vi create --hv fixture --kernel vmlinuz --user Root db
	[[ "$output" == "vi: error: invalid user 'Root': "* ]]
	run -2 vi create --hv fixture --kernel vmlinuz --user ci --ssh-key k db
	[ "$output" = "vi: error: k:1: not an SSH public key (is it the private key?)" ]
	: >empty
	run -2 vi create --hv fixture --kernel vmlinuz --ssh-key empty db
	[ "$output" = "vi: error: 'empty' holds no SSH public key" ]
	run -3 vi create --hv fixture --kernel vmlinuz --user-data nosuch db
	[ ! -e "$VI_HOME/vms/db" ]
	[ -z "$(ls -A "$VI_HOME/vms/.staging")" ]
}

@test "a clone gets its own seed, host key and forward ports, and the source's keys and user-data" {
	ssh-keygen -q -t ed25519 -N '' -C bob -f bob
	printf '#cloud-config\nruncmd:\n  - echo hello from user-data\n' >ud.yaml
	vi -q create --hv fixture --kernel vmlinuz --user bob --ssh-key bob.pub --user-data ud.yaml \
		--forward 0:80 src
	vi -q clone src c1
	[ "$(cut -d' ' -f2- "$VI_HOME/vms/src/known_hosts")" != "$(cut -d' ' -f2- "$VI_HOME/vms/c1/known_hosts")" ]
	[ "$(cut -d' ' -f1 "$VI_HOME/vms/c1/known_hosts")" = c1 ]
	mtype -i "$VI_HOME/vms/c1/seed.img" ::/vi/hostname | grep -qx c1
	mtype -i "$VI_HOME/vms/c1/seed.img" ::/vi/authorized_keys | grep -q " bob$\|$(cut -d' ' -f2 bob.pub)"
	mtype -i "$VI_HOME/vms/c1/seed.img" ::/user-data | grep -q "hello from user-data"
	[ "$(vi show --json c1 | jq '[.vm.disks[] | select(.readonly)] | length')" = 1 ]
	[ "$(fwd src | cut -d'>' -f2 | sort)" = "$(fwd c1 | cut -d'>' -f2 | sort)" ]
	[ "$(fwd src)" != "$(fwd c1)" ]
	[ "$(vi forward list --json c1 | jq '[.forwards[] | select(.auto)] | length')" = 2 ]
}
