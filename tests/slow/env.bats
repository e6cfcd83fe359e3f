#!/usr/bin/env bats
# vi env for real: an environment of a db and two webs from tiny on a private
# libvirt network, brought up with one command, reached by name and through
# a forward, cloned while it runs, brought up again without change,
# snapshotted and checked out together, and taken down to nothing. Guests
# boot under TCG several at once: about five minutes, make check-slow only.

load ../lib/common
load ../lib/template

setup_file() {
	tiny_store
}

setup() {
	need_hv_qemu
	cd "$BATS_TEST_TMPDIR"
	env_name=e$$
	port=$(free_port)
	cat >db-init.yaml <<-'E'
		#cloud-config
		runcmd:
		  - mkdir -p /srv/db
		  - echo db answers >/srv/db/index.html
		  - httpd -p 80 -h /srv/db
	E
	cat >web-init.yaml <<-'E'
		#cloud-config
		runcmd:
		  - mkdir -p /srv/www
		  - hostname >/srv/www/index.html
		  - httpd -p 80 -h /srv/www
	E
	cat >vi-env.yaml <<-E
		name: $env_name
		networks: [backend]
		machines:
		  db:
		    template: tiny
		    networks: [backend]
		    user-data: ./db-init.yaml
		  web:
		    template: tiny
		    count: 2
		    networks: [backend, user]
		    forward: ["$port:80"]
		    depends: [db]
		    user-data: ./web-init.yaml
	E
}

teardown() {
	vi -q env down "$env_name" 2>/dev/null || true
}

@test "up, by name and through a forward, a clone beside it, up again, down to nothing" {
	run -0 vi env up
	grep -Eq "^$env_name-db +created, ready in [0-9.]+ s$" <<<"$output"
	grep -Eq "^$env_name-web-1 +created, ready in [0-9.]+ s$" <<<"$output"
	grep -Eq "^$env_name-web-2 +created, ready in [0-9.]+ s$" <<<"$output"
	[ "${lines[-1]}" = "environment '$env_name' is up: 3 machines" ]
	# db was ready before either web was made.
	db_line=$(grep -n "^$env_name-db .*ready" <<<"$output" | cut -d: -f1)
	web_line=$(grep -n "^$env_name-web-1 .*creating" <<<"$output" | cut -d: -f1)
	[ "$db_line" -lt "$web_line" ]
	# Ordinary VMs, in an environment.
	run -0 vi list --label "vi.env=$env_name" --json
	[ "$(jq -r '[.vms[] | "\(.name) \(.state)"] | sort | join(",")' <<<"$output")" = \
		"$env_name-db running,$env_name-web-1 running,$env_name-web-2 running" ]
	# From web-1, db by name on the private network.
	run -0 vi env ssh "$env_name" web-1 -- wget -q -O - http://db/
	[ "$output" = "db answers" ]
	run -0 vi env ssh "$env_name" web-2 -- wget -q -O - http://web-1/
	[ "$output" = "$env_name-web-1" ]
	# The host reaches web-1 and web-2 through their forwards.
	run -0 curl -sS --max-time 20 "http://127.0.0.1:$port/"
	[ "$output" = "$env_name-web-1" ]
	run -0 vi show --json "$env_name-web-2"
	p2=$(jq -r '.vm.nics[] | .forwards[] | select(.guest_port == 80) | .host_port' <<<"$output")
	[ "$p2" -gt "$port" ]
	run -0 curl -sS --max-time 20 "http://127.0.0.1:$p2/"
	[ "$output" = "$env_name-web-2" ]
	# The private network goes nowhere else: db has no default route, and
	# its addresses are in the environment's range only.
	run -0 vi env ssh "$env_name" db -- ip route
	[[ "$output" != *default* ]]
	run -0 vi env status --json "$env_name"
	cidr=$(jq -r '.envs[0].networks[0].cidr' <<<"$output")
	net=$(jq -r '.envs[0].networks[0].network' <<<"$output")
	[ "$net" = "vi-$env_name-backend" ]
	[ "$(jq -r '.envs[0].networks[0].hv' <<<"$output")" = qemu ]
	addr=$(jq -r ".envs[0].machines[] | select(.vm == \"$env_name-db\") | .addresses.backend" <<<"$output")
	[ "${addr%.*}.0/24" = "$cidr" ]
	xml=$(virsh -c qemu:///system net-dumpxml "$net")
	[[ "$xml" == *"<ip address="* && "$xml" != *"<forward"* ]]
	# A clone of it while it runs: new names, identities and network, and
	# both work at once.
	run -0 vi env clone "$env_name" "${env_name}c"
	[ "${lines[-1]}" = "cloned environment '$env_name' to '${env_name}c': 3 machines" ]
	run -0 vi env status --json "${env_name}c"
	ccidr=$(jq -r '.envs[0].networks[0].cidr' <<<"$output")
	cdb=$(jq -r ".envs[0].machines[] | select(.vm == \"${env_name}c-db\") | .addresses.backend" <<<"$output")
	[ "$ccidr" != "$cidr" ]
	[ "${cdb%.*}.0/24" = "$ccidr" ]
	[ "$(vi show --json "${env_name}c-db" | jq -r .vm.machine_id)" != \
		"$(vi show --json "$env_name-db" | jq -r .vm.machine_id)" ]
	run -0 vi env ssh "${env_name}c" web-1 -- ping -c 1 -W 5 db
	[[ "$output" == *"($cdb)"* ]]
	run -0 vi env ssh "${env_name}c" web-1 -- hostname
	[ "$output" = "${env_name}c-web-1" ]
	run -0 vi env ssh "$env_name" web-1 -- wget -q -O - http://db/
	[ "$output" = "db answers" ]
	run -0 vi env down "${env_name}c"
	[ "$(vi list --label "vi.env=$env_name" --json | jq -r '.vms | length')" = 3 ]
	# Up again: nothing changes, and it says so.
	run -0 vi env up
	[ "${lines[-1]}" = "environment '$env_name' is up: 3 machines, nothing changed" ]
	grep -Eq "^$env_name-db +running, unchanged$" <<<"$output"
	# A definition changed is reported, not rebuilt.
	sed -i 's/count: 2/count: 2\n    memory: 256M/' vi-env.yaml
	run -0 vi env up
	grep -Eq "^$env_name-web-1 +running, changed in the file" <<<"$output"
	# Down: no VM, network, bridge or record.
	bridge=$(virsh -c qemu:///system net-info "$net" | awk '/^Bridge:/ { print $2 }')
	[ -n "$bridge" ]
	[ -e "/sys/class/net/$bridge" ]
	run -0 vi env down "$env_name"
	[ "${lines[-1]}" = "environment '$env_name' destroyed: 3 machines, its networks and record" ]
	[ -z "$(vi list --label "vi.env=$env_name" --json | jq -r '.vms[].name')" ]
	run virsh -c qemu:///system net-info "$net"
	[ "$status" -ne 0 ]
	[ ! -e "/sys/class/net/$bridge" ]
	[ ! -e "$VI_HOME/envs/$env_name.yaml" ]
	[ ! -e "$VI_HOME/vms/$env_name-db" ]
}

@test "a failure in the middle: the machines made are listed, up resumes; a snapshot and a checkout of all" {
	# web's template does not exist: db is made, then up stops.
	sed -i '0,/template: tiny/! s/template: tiny/template: nosuch/' vi-env.yaml
	run -3 vi env up
	[ "${lines[-1]}" = "vi: error: machine 'web' (VM '$env_name-web-1'): no template named 'nosuch' (see 'vi template list')" ]
	run -0 vi env status --json "$env_name"
	[ "$(jq -r '[.envs[0].machines[].vm] | join(",")' <<<"$output")" = "$env_name-db" ]
	# Mended, up makes only what is missing.
	sed -i 's/template: nosuch/template: tiny/' vi-env.yaml
	run -0 vi env up
	grep -Eq "^$env_name-db +running, unchanged$" <<<"$output"
	grep -Eq "^$env_name-web-1 +created, ready" <<<"$output"
	grep -Eq "^$env_name-web-2 +created, ready" <<<"$output"
	# A snapshot of all at one instant, and back to it.
	vi env ssh "$env_name" db -- sh -c "'echo before >/root/mark; sync'"
	run -0 vi env snapshot "$env_name" s1
	[[ "${lines[-1]}" == "environment '$env_name': snapshot 's1' of 3 machines in "*" s, paused together "*" s" ]]
	vi env ssh "$env_name" db -- sh -c "'echo after >/root/mark; sync'"
	run -0 vi env checkout "$env_name" s1
	[ "${lines[-1]}" = "environment '$env_name' is at snapshot 's1': 3 machines" ]
	[ "$(vi list --label "vi.env=$env_name" --json | jq -r '[.vms[].state] | unique | join(",")')" = running ]
	run -0 vi env ssh "$env_name" db -- cat /root/mark
	[ "$output" = before ]
	run -3 vi env checkout "$env_name" nosuch
	[[ "$output" == "vi: error: VM '$env_name-"*"' of environment '$env_name' has no snapshot 'nosuch'" ]]
	run -0 vi env down "$env_name"
	[ -z "$(vi list --label "vi.env=$env_name" --json | jq -r '.vms[].name')" ]
}
