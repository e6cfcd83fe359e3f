#!/usr/bin/env bats
# vi host: the inventory of other hosts running vi, and vi --host VERB, which
# runs a verb there. The hosts that answer are network namespaces with their
# own sshd (tests/lib/hosts.bash); the inventory alone needs none.

load lib/common

setup() {
	common_setup
	cd "$BATS_TEST_TMPDIR"
}

teardown() {
	if declare -F hosts_teardown >/dev/null; then
		hosts_teardown
	fi
}

@test "add, list and rm keep the inventory in hosts.yaml" {
	run -0 vi host add h2 ssh://root@127.0.0.1:1 --home /srv/vi --vi /usr/local/bin/vi
	[ "$output" = "added host 'h2' at ssh://root@127.0.0.1:1" ]
	run -0 vi host add v6 'ssh://[::1]'
	grep -qx "  h2:" "$VI_HOME/hosts.yaml"
	grep -qx "    home: /srv/vi" "$VI_HOME/hosts.yaml"
	grep -qx "    vi: /usr/local/bin/vi" "$VI_HOME/hosts.yaml"
	run -0 vi host add lv ssh://root@10.0.0.9 --libvirt qemu+tcp://10.0.0.9/system
	grep -qx "    libvirt: qemu+tcp://10.0.0.9/system" "$VI_HOME/hosts.yaml"
	[ "$(vi host list --json | jq -r '.hosts[] | select(.name == "lv") | .libvirt')" = qemu+tcp://10.0.0.9/system ]
	run -0 vi host rm lv
	run -0 vi host rm v6
	[ "$output" = "removed host 'v6'" ]
	! grep -q v6 "$VI_HOME/hosts.yaml" || false
	run -0 vi host list --json
	[ "$(jq -r '.hosts | length' <<<"$output")" = 1 ]
	[ "$(jq -r '.hosts[0].uri' <<<"$output")" = ssh://root@127.0.0.1:1 ]
}

@test "bad input is refused in one line and changes nothing" {
	vi -q host add h2 ssh://root@127.0.0.1:1
	cp "$VI_HOME/hosts.yaml" before.yaml
	run -5 vi host add h2 ssh://other
	[ "$output" = "vi: error: host 'h2' exists" ]
	for uri in http://x ssh:// 'ssh://a b' ssh://x:0 ssh://x:65536 ssh://x/path ssh://-oProxyCommand=x \
		'ssh://[::1' ssh://u:p@x; do
		run -2 vi host add h3 "$uri"
		[ "$output" = "vi: error: invalid host URI '$uri': expected ssh://[USER@]ADDRESS[:PORT]" ]
	done
	run -2 vi host add 'bad name' ssh://x
	[ "${#lines[@]}" = 1 ]
	for uri in '' nowhere 'qemu+ssh://a b/system'; do
		run -2 vi host add h3 ssh://x --libvirt "$uri"
		[ "$output" = "vi: error: --libvirt takes a libvirt URI such as qemu+ssh://ADDRESS/system, not '$uri'" ]
	done
	run -2 vi host add h3 ssh://x --home relative/dir
	[ "$output" = "vi: error: --home must be an absolute path on that host, not 'relative/dir'" ]
	run -3 vi host rm nope
	[ "$output" = "vi: error: unknown host 'nope' (see 'vi host list')" ]
	run -3 vi host show nope
	run -3 vi --host nope list
	[ "$output" = "vi: error: unknown host 'nope' (see 'vi host list')" ]
	VI_HOST=nope run -3 vi list
	cmp before.yaml "$VI_HOME/hosts.yaml"
}

@test "a host that does not answer: one line with ssh's reason, and the list says so" {
	vi -q host add h2 ssh://root@127.0.0.1:1
	run -1 vi --host h2 list
	[ "$output" = "vi: error: cannot reach host 'h2': ssh: connect to host 127.0.0.1 port 1: Connection refused" ]
	run -1 vi host show h2
	[ "${lines[-1]}" = "vi: error: host 'h2' unreachable: ssh: connect to host 127.0.0.1 port 1: Connection refused" ]
	run -0 vi host list
	[[ "${lines[0]}" == NAME*URI*STATE*BACKENDS*CPUS*MEMORY*FREE*VMS*RTT*PROBLEM ]]
	[[ "${lines[1]}" == h2*ssh://root@127.0.0.1:1*down*"unreachable: ssh: connect to host 127.0.0.1 port 1: Connection refused" ]]
	run -0 vi host list --json
	[ "$(jq -r '.hosts[0].reachable' <<<"$output")" = false ]
	run -0 vi list --all-hosts
	[ "${lines[0]}" = "vi: warning: host 'h2' is unreachable: ssh: connect to host 127.0.0.1 port 1: Connection refused" ]
}

@test "vi host info tells what this machine is and has" {
	run -0 vi host info --json
	[ "$(jq -r .cpus <<<"$output")" = "$(nproc)" ]
	[ "$(jq -r .home <<<"$output")" = "$VI_HOME" ]
	[ "$(jq -r '.memory > .memory_free and .memory_free > 0' <<<"$output")" = true ]
	[ "$(jq -r '.vms' <<<"$output")" = 0 ]
	[ "$(jq -r '.backends | type' <<<"$output")" = array ]
	run -0 vi host info
	[[ "${lines[3]}" == "cpus:      $(nproc) "* ]]
}

# Two hosts of the harness, h1 and h2, in the inventory with their homes.
two_hosts() {
	load lib/hosts
	hosts_setup 2
	for i in 1 2; do
		vi -q host add "h$i" "$(host_uri "$i")" --home "$(host_home "$i")" --vi "$VI_BUILD/vi"
	done
}

@test "vi host list asks every host at once: up, backends, CPUs, memory, VMs, round trip" {
	two_hosts
	run -0 vi host list
	[[ "${lines[1]}" == h1*"$(host_uri 1)"*up*" $(nproc) "*" 0/0 "*ms* ]]
	[[ "${lines[2]}" == h2*"$(host_uri 2)"*up* ]]
	run -0 vi host list --json
	[ "$(jq -r '[.hosts[].reachable] | all' <<<"$output")" = true ]
	[ "$(jq -r '.hosts[0].info.home' <<<"$output")" = "$(host_home 1)" ]
	[ "$(jq -r '.hosts[0].info.cpus' <<<"$output")" = "$(nproc)" ]
	[ "$(jq -r '.hosts[0].rtt_ms > 0' <<<"$output")" = true ]
	run -0 vi host show h2
	[[ "$output" == *"state:     up"* ]]
	[[ "$output" == *"store $(host_home 2)"* ]]
	hosts_teardown
}

@test "vi --host runs a verb there: its output, its store, its exit status" {
	two_hosts
	hv=svm
	grep -q GenuineIntel /proc/cpuinfo && hv=vtx
	run -0 vi --host h1 create --hv "$hv" --kernel "$VI_BUILD/tests/guest/stamps.bzImage" \
		--nic none web
	[[ "$output" == "created VM 'web'"* ]]
	# There, not here.
	[ -f "$(host_home 1)/vms/web/vm.yaml" ]
	[ ! -e "$VI_HOME/vms/web" ]
	run -0 vi --host h1 list --json
	[ "$(jq -r '.vms[0].name' <<<"$output")" = web ]
	# The host's own error and exit status, unchanged.
	run -3 vi --host h1 show nope
	[ "$output" = "$(vi --home "$(host_home 1)" show nope 2>&1)" ]
	VI_HOST=h2 run -0 vi list
	[ -z "$output" ]
	# The pool: every host's VMs with a HOST column.
	vi -q create --hv "$hv" --kernel "$VI_BUILD/tests/guest/stamps.bzImage" --nic none here
	run -0 vi list --all-hosts
	[[ "${lines[0]}" == HOST*NAME*BACKEND*STATE* ]]
	[[ "${lines[1]}" == local*here* ]]
	[[ "${lines[2]}" == h1*web* ]]
	run -0 vi list --all-hosts --json
	[ "$(jq -r '[.vms[] | "\(.host):\(.name)"] | join(" ")' <<<"$output")" = "null:here h1:web" ]
	[ "$(jq -r '[.hosts[].error] | map(. == null) | all' <<<"$output")" = true ]
	vi -q --host h1 destroy web
	hosts_teardown
}

@test "a host whose link is cut is reported in one line and the others still answer" {
	two_hosts
	host_link_down 2
	run -1 vi --host h2 list
	[ "${#lines[@]}" = 1 ]
	[[ "$output" == "vi: error: cannot reach host 'h2': ssh: connect to host $(host_addr 2) port 22: "* ]]
	run -0 vi host list --json
	[ "$(jq -r '.hosts[0].reachable' <<<"$output")" = true ]
	[ "$(jq -r '.hosts[1].reachable' <<<"$output")" = false ]
	host_link_up 2
	run -0 vi --host h2 list
	hosts_teardown
}
