#!/usr/bin/env bats
# vi host: the inventory of other hosts running vi, and vi --host VERB, which
# runs a verb there. The hosts that answer are network namespaces with their
# own sshd (tests/lib/hosts.bash); the inventory alone needs none.

load lib/common

setup() {
	common_setup
}

@test "add, list and rm keep the inventory in hosts.yaml" {
	run -0 vi host add h2 ssh://root@127.0.0.1:1 --home /srv/vi --vi /usr/local/bin/vi
	[ "$output" = "added host 'h2' at ssh://root@127.0.0.1:1" ]
	run -0 vi host add v6 'ssh://[::1]'
	grep -qx "  h2:" "$VI_HOME/hosts.yaml"
	grep -qx "    home: /srv/vi" "$VI_HOME/hosts.yaml"
	grep -qx "    vi: /usr/local/bin/vi" "$VI_HOME/hosts.yaml"
	run -0 vi host rm v6
	[ "$output" = "removed host 'v6'" ]
	! grep -q v6 "$VI_HOME/hosts.yaml"
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
