#!/usr/bin/env bats
# vi env without booting anything: files that do not read, unknown
# environments, a machine whose template does not exist, and what up leaves
# for down. The environment brought up for real is tests/slow/env.bats.

load lib/common

setup() {
	common_setup
	cd "$BATS_TEST_TMPDIR"
}

@test "a file with a mistake: one line where it is, exit 2, nothing made" {
	cat >vi-env.yaml <<-'E'
		name: shop
		networks: [backend]
		machines:
		  web:
		    template: tiny
		    networks: [backnd]
	E
	run -2 vi env up
	[ "$output" = "vi: error: vi-env.yaml:6:16: unknown network 'backnd'; did you mean 'backend'?" ]
	[ ! -e "$VI_HOME/envs/shop.yaml" ]
	run -0 vi env status
	[ "$output" = "no environments: 'vi env up FILE' makes one" ]
}

@test "no file here, unknown environments, and bad usage" {
	run -3 vi env up
	[ "$output" = "vi: error: no vi-env.yaml here: name the environment's file" ]
	run -3 vi env up nosuch.yaml
	[[ "$output" == "vi: error: cannot open 'nosuch.yaml'"* ]] || [[ "$output" == "vi: error: "*"nosuch.yaml"* ]]
	run -3 vi env status shop
	[ "$output" = "vi: error: no environment 'shop' (see 'vi env status')" ]
	run -3 vi env down shop
	[ "$output" = "vi: error: no environment 'shop' (see 'vi env status')" ]
	run -2 vi env ssh shop web-1 uname
	[ "$output" = "vi: error: unexpected argument 'uname' (a command goes after --)" ]
	run -2 vi env ssh 'sh op' web
	[[ "$output" == "vi: error: invalid environment name 'sh op'"* ]]
}

@test "a machine that cannot be made stops up in one line; down removes what it made" {
	cat >vi-env.yaml <<-'E'
		name: lab
		machines:
		  db:
		    template: nosuch
	E
	run -3 vi env up
	[ "${lines[-1]}" = "vi: error: machine 'db' (VM 'lab-db'): no template named 'nosuch' (see 'vi template list')" ]
	[ "${lines[0]}" = "lab-db               creating" ]
	[[ "${lines[1]}" == "lab-db               failed in "*" s" ]]
	# The environment is on record, with nothing of the machine.
	run -0 vi env status --json
	[ "$(jq -r '.envs[0].name' <<<"$output")" = lab ]
	[ "$(jq -r '.envs[0].machines | length' <<<"$output")" = 0 ]
	run -0 vi env down lab
	[ "$output" = "environment 'lab' destroyed: 0 machines, its networks and record" ]
	[ ! -e "$VI_HOME/envs/lab.yaml" ]
}

@test "machines of an environment are ordinary VMs with an ENV column in vi list" {
	use_fixture_plugins
	qemu-img create -q -f qcow2 disk.qcow2 16M
	vi -q create --hv fixture --disk "$PWD/disk.qcow2" --nic none --label vi.env=shop shop-db
	vi -q create --hv fixture --disk "$PWD/disk.qcow2" --nic none other
	run -0 vi list
	[[ "${lines[0]}" == "NAME "*"ENV "*"BACKEND"* ]]
	grep -Eq '^shop-db +shop +fixture' <<<"$output"
	grep -Eq '^other +- +fixture' <<<"$output"
	run -0 vi list --label vi.env=shop --json
	[ "$(jq -r '[.vms[].name] | join(",")' <<<"$output")" = shop-db ]
	# Without one, no ENV column.
	vi -q destroy --force shop-db
	run -0 vi list
	[[ "${lines[0]}" == "NAME "*"BACKEND"* ]]
	[[ "${lines[0]}" != *ENV* ]]
}

@test "clone, snapshot and checkout of what is not there: one line each" {
	run -3 vi env clone nosuch copy
	[ "$output" = "vi: error: no environment 'nosuch' (see 'vi env status')" ]
	run -2 vi env clone shop shop
	[ "$output" = "vi: error: an environment is not cloned onto itself" ]
	run -2 vi env clone shop 'bad name'
	[[ "$output" == "vi: error: invalid environment name 'bad name'"* ]]
	run -3 vi env snapshot nosuch
	[ "$output" = "vi: error: no environment 'nosuch' (see 'vi env status')" ]
	run -3 vi env checkout nosuch s1
	[ "$output" = "vi: error: no environment 'nosuch' (see 'vi env status')" ]
	run -2 vi env snapshot shop 'bad name'
	[[ "$output" == "vi: error: invalid snapshot name 'bad name'"* ]]
}

@test "a record of an older vi, its network under 'libvirt:', still reads and goes down" {
	mkdir -p "$VI_HOME/envs"
	cat >"$VI_HOME/envs/old.yaml" <<-E
		schema: 1
		file: $PWD/vi-env.yaml
		networks:
		  backend:
		    libvirt: vi-old-backend
		    cidr: 10.250.9.0/24
		    hv: qemu
		machines: {}
	E
	run -0 vi env status old
	[ "${lines[-1]}" = "network backend: 10.250.9.0/24 (vi-old-backend on hv-qemu)" ]
	run -0 vi env down old
	[ ! -e "$VI_HOME/envs/old.yaml" ]
}
