#!/usr/bin/env bats
# The test hosts of lib/hosts: three namespaces on a private bridge, each with
# its own sshd and vi home, which later suites use as the hosts of a pool.

load lib/common
load lib/hosts

setup_file() {
	hosts_setup 3
}

teardown_file() {
	hosts_teardown
}

setup() {
	hosts_require
	common_setup
}

# Succeeds if a TCP connection to ADDR port 22 opens within half a second, from
# network namespace NS or, with no NS, from here: tcp_open ADDR [NS]
tcp_open() {
	if [ -n "${2:-}" ]; then
		ip netns exec "$2" timeout 0.5 bash -c "</dev/tcp/$1/22" 2>/dev/null
	else
		timeout 0.5 bash -c "</dev/tcp/$1/22" 2>/dev/null
	fi
}

@test "each host answers over ssh with its own address only, and its own processes" {
	for i in 1 2 3; do
		run host_run "$i" sh -c 'cat /proc/1/comm && ip -4 -o addr show'
		[ "$status" -eq 0 ]
		[ "${lines[0]}" = sshd ]
		[ "$(awk 'NR > 1 { print $2, $4 }' <<<"$output")" = "lo 127.0.0.1/8
eth0 $(host_addr "$i")/24" ]
	done
	[ "$(host_uri 2)" = "ssh://root@$(host_addr 2)" ]
}

@test "host_run keeps each word one argument" {
	run host_run 1 printf '[%s]\n' 'two words' "it's" '$HOME' ''
	[ "$status" -eq 0 ]
	[ "$output" = "[two words]
[it's]
[\$HOME]
[]" ]
}

@test "the hosts reach each other through the bridge, and over ssh" {
	tcp_open "$(host_addr 2)" "$(host_ns 1)"
	tcp_open "$(host_addr 1)" "$(host_ns 3)"
	run host_run 1 sh -c "$VI_SSH root@$(host_addr 2) cat /proc/net/fib_trie"
	[ "$status" -eq 0 ]
	[[ $output == *"$(host_addr 2)"* ]]
	[[ $output != *"$(host_addr 1)"* ]]
}

@test "vi runs on a host over ssh with that host's home" {
	run host_run 1 "$VI_BUILD/vi" --home "$(host_home 1)" list
	[ "$status" -eq 0 ]
	[ "$output" = "" ]
	[ -d "$(host_home 1)/vms" ]
	[ ! -e "$(host_home 2)/vms" ]
	[ "$(stat -c %a "$(host_home 2)")" = 711 ]
}

@test "a host whose link is down cannot be reached until it is up again" {
	host_link_down 2
	run ! tcp_open "$(host_addr 2)"
	run ! tcp_open "$(host_addr 2)" "$(host_ns 1)"
	tcp_open "$(host_addr 3)" "$(host_ns 1)"
	host_link_up 2
	run host_run 2 true
	[ "$status" -eq 0 ]
	tcp_open "$(host_addr 2)" "$(host_ns 1)"
}

# Last: it takes the hosts down.
@test "host_kill ends all a host runs, and hosts_teardown leaves nothing" {
	host_run 3 sh -c 'sleep 300 </dev/null >/dev/null 2>&1 &'
	[ "$(ip netns pids "$(host_ns 3)" | wc -l)" -ge 3 ]
	host_kill 3
	[ -z "$(ip netns pids "$(host_ns 3)")" ]
	run ! tcp_open "$(host_addr 3)"
	run host_run 1 true
	[ "$status" -eq 0 ]

	prefix=$HOSTS_PREFIX$HOSTS_ID-
	dir=$HOSTS_DIR
	hosts_teardown
	run ip netns list
	[[ $output != *"$prefix"* ]]
	run ip -o link show
	[[ $output != *"$prefix"* ]]
	run pgrep -f -- "$dir"
	[ "$status" -eq 1 ]
}
