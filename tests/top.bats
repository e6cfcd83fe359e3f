#!/usr/bin/env bats
# vi top: batch frames that agree with vi stats, and the live view in a real
# terminal (tmux), which gives the terminal back as it found it.

load lib/common
load lib/native

teardown() {
	[ -n "${sock:-}" ] && tmux -L "$sock" kill-server 2>/dev/null
	native_teardown
}

@test "--batch prints plain frames whose figures agree with vi stats --json" {
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start s1
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none s2
	wait_console s1 "stamps: gen 1 ok"
	run -0 vi top --batch -n 2 -d 1
	top=$output
	stats=$(vi stats --json)
	[ "$(grep -c '^vi top - ' <<<"$top")" = 2 ]
	[[ $top != *$'\e'* ]]
	[[ ${lines[0]} =~ ^"vi top - "[0-9:]+", 2 VMs, 1 running, sorted by cpu"$ ]]
	[[ ${lines[1]} == "host: cpu "*", load "* ]]
	# The last frame's line of each VM, the running one first.
	frame=$(awk '/^vi top - /{f=""} {f=f $0 "\n"} END{printf "%s", f}' <<<"$top")
	rows=$(grep -E '^s[12] ' <<<"$frame" | tr -s ' ')
	[ "$(cut -d' ' -f1 <<<"$rows" | tr '\n' ' ')" = "s1 s2 " ]
	read -r name state cpus util mem _ <<<"$(head -1 <<<"$rows")"
	[ "$state" = "$(jq -r '.vms[0].state' <<<"$stats")" ]
	[ "$cpus" = "$(jq -r '.vms[0].cpus' <<<"$stats")" ]
	[ "$mem" = 64M ]
	[ "$(jq -r '.vms[0].memory' <<<"$stats")" = $((64 << 20)) ]
	# The guest spins: both see it busy, within what a second apart allows.
	jq -e --argjson u "${util%\%}" '(.vms[0]["cpu.util"] - $u) | fabs <= 25' <<<"$stats"
	[ "$(sed -n 2p <<<"$rows")" = "s2 stopped 1 - 64M - - - - - -" ]
	grep -qx "RESOURCE ISSUES" <<<"$frame"
}

@test "the live view in a terminal: the VMs, keys, and the terminal given back" {
	command -v tmux >/dev/null || skip "tmux is not installed (scripts/setup installs it)"
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start s1
	sock=vi-top-$$
	d=$BATS_TEST_TMPDIR
	tmux -L "$sock" new-session -d -x 120 -y 30 \
		"stty -g >$d/before; vi top -d 0.5; echo \$? >$d/status; stty -g >$d/after; sleep 60"
	for _ in $(seq 100); do
		tmux -L "$sock" capture-pane -p >"$d/screen"
		grep -q '^s1 ' "$d/screen" && break
		sleep 0.2
	done
	grep -q '^s1  *running ' "$d/screen"
	grep -q 'sorted by cpu' "$d/screen"
	grep -q 'keys: c cpu  m memory  n name  d disk  q quit' "$d/screen"
	tmux -L "$sock" send-keys n
	for _ in $(seq 50); do
		tmux -L "$sock" capture-pane -p | grep -q 'sorted by name' && break
		sleep 0.2
	done
	tmux -L "$sock" capture-pane -p | grep -q 'sorted by name'
	tmux -L "$sock" send-keys q
	for _ in $(seq 100); do
		[ -s "$d/after" ] && break
		sleep 0.1
	done
	[ "$(cat "$d/status")" = 0 ]
	[ "$(cat "$d/after")" = "$(cat "$d/before")" ]
	# The alternate screen is gone: the shell's screen is back, without the view.
	! tmux -L "$sock" capture-pane -p | grep -q 'RESOURCE ISSUES' || false
}

@test "without a terminal it needs --batch; no --json" {
	run -2 vi top </dev/null
	[ "$output" = "vi: error: vi top needs a terminal: use --batch" ]
	run -2 vi --json top --batch
	[[ $output == *"vi top has no --json: 'vi stats --json --watch S' gives the figures"* ]]
	run -2 vi top --batch --delay 0
	[ "$output" = "vi: error: invalid delay '0': must be from 0.1 to 86400 seconds" ]
}

@test "in a terminal, --batch shows the VMs and the policies, each with its state and last action" {
	command -v tmux >/dev/null || skip "tmux is not installed (scripts/setup installs it)"
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start s1
	wait_console s1 "stamps: gen 1 ok"
	printf 'name: note\nvms: [s1]\nwhen: cpus >= 1\ncooldown: 1h\nthen:\n  - exec: "true"\n' |
		vi -q policy add -
	printf 'name: off\nvms: [s1]\nwhen: state == crashed\nthen: restart\n' | vi -q policy add -
	vi -q policy disable off
	vi -q policy run --once
	sock=vi-top-$$
	d=$BATS_TEST_TMPDIR
	tmux -L "$sock" new-session -d -x 160 -y 40 "vi top --batch -n 1 >$d/frame; echo \$? >$d/status; sleep 60"
	for _ in $(seq 100); do
		[ -s "$d/status" ] && break
		sleep 0.1
	done
	[ "$(cat "$d/status")" = 0 ]
	grep -q '^s1  *running  *1 ' "$d/frame"
	grep -qx 'POLICIES (no engine runs)' "$d/frame"
	grep -q '^POLICY  *STATE  *NOW  *LAST ACTION$' "$d/frame"
	grep -Eq '^note  +enabled  +fire s1: holds \(cpus=1\)  +[0-9:]{8} s1 exec true: exit status 0$' "$d/frame"
	grep -Eq '^off  +disabled  +-  +-$' "$d/frame"
}
