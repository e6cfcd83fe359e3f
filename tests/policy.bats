#!/usr/bin/env bats
# vi policy: policies kept in the store, the plan, the engine that grows,
# restarts and runs commands, its audit log, and bad input.

load lib/common
load lib/native

setup() {
	native_setup
}

teardown() {
	[ -z "${engine:-}" ] || { kill "$engine" 2>/dev/null; wait "$engine" 2>/dev/null || true; }
	native_teardown
}

# A VM whose every vCPU spins: 1 now, room for 3.
burner() { # NAME
	vi -q create --hv "$hv" --kernel "$guest/cpu-hotplug.bzImage" --cmdline "max_cpus=3 burn" \
		--cpus 1 --max-cpus 3 --memory 64M --nic none --start "$1"
	wait_console "$1" "hotplug: ready for 3 cpus"
}

# Starts the engine in the background, every $1 seconds; its output in engine.out.
start_engine() { # INTERVAL
	vi policy run --interval "$1" >engine.out 2>&1 &
	engine=$!
	for _ in $(seq 50); do
		[ -s "$VI_HOME/policies/engine.lock" ] && return 0
		sleep 0.1
	done
	cat engine.out
	return 1
}

stop_engine() {
	kill "$engine"
	wait "$engine" || true
	engine=
}

# Waits until $1 (a shell condition) holds, for up to $2 seconds; it asks
# twice a second, so as not to take the CPU from the guests it watches.
wait_for() { # CONDITION SECONDS
	for _ in $(seq $(($2 * 2))); do
		eval "$1" && return 0
		sleep 0.5
	done
	echo "still not: $1"
	return 1
}

# The acceptance's policy: over 80% for 10 s, one more vCPU, at most 3.
burn_policy() { # VMS
	vi -q policy add - <<-EOF
		name: burn
		vms: [$1]
		when: cpu.util > 80
		for: 10s
		cooldown: 20s
		max: {cpus: 3}
		then:
		  - grow: {cpus: +1}
	EOF
}

cpus_of() { vi show --json "$1" | jq -r .vm.cpus; }

@test "add, list, show, disable, enable and rm a policy" {
	cat >web.yaml <<-'EOF'
		# grow busy web servers
		name: web-cpu
		vms: [web-*]
		when: cpu.util > 90
		for: 3m
		cooldown: 5m
		then:
		  - grow: {cpus: +1}
		---
		name: crashed
		vms: ["*"]
		when: state == crashed
		then: restart
	EOF
	run -0 vi policy add web.yaml
	[ "$output" = "added policy 'web-cpu'
added policy 'crashed'" ]
	run -0 vi policy list
	[[ ${lines[0]} == NAME*ENABLED*VMS*WHEN*THEN*LAST ]]
	[[ ${lines[1]} == "crashed "*" yes "*"state == crashed"*restart* ]]
	[[ ${lines[2]} == "web-cpu "*" yes "*"web-*"*"cpu.util > 90"*"grow cpus +1"* ]]
	[ "${lines[3]}" = "no engine runs: 'vi policy run' starts one" ]
	run -0 vi policy show web-cpu
	[[ $output == *"when: cpu.util > 90"* ]]
	[[ $output == *"# enabled"* ]]
	run -0 vi policy disable web-cpu
	[ "$output" = "disabled policy 'web-cpu'" ]
	[ "$(vi policy list --json | jq -r '.policies[] | select(.name == "web-cpu") | .enabled')" = false ]
	run -0 vi policy plan
	[[ $output == *"web-cpu "*"* "*disabled* ]]
	vi -q policy enable web-cpu
	[ "$(vi policy list --json | jq -r '.policies[] | select(.name == "web-cpu") | "\(.enabled) \(.for) \(.cooldown) \(.then[0])"')" = "true 180 300 grow cpus +1" ]
	# Adding it again replaces only when asked.
	run -5 vi policy add web.yaml
	[ "$output" = "vi: error: policy 'web-cpu' exists: 'vi policy add --replace' replaces it" ]
	vi -q policy add --replace - <web.yaml
	run -0 vi policy rm crashed
	run -3 vi policy rm crashd
	[ "$output" = "vi: error: no policy named 'crashd'" ]
	run -3 vi policy show web-cpi
	[ "$output" = "vi: error: no policy named 'web-cpi'; did you mean 'web-cpu'?" ]
	[ "$(vi policy list --json | jq -r '[.policies[].name] | join(" ")')" = web-cpu ]
}

@test "bad policies: one line with file, line and column, and nothing added" {
	printf 'name: p1\nvms: [a]\nwehn: cpu.util > 90\nthen: restart\n' >typo.yaml
	run -2 vi policy add typo.yaml
	[ "$output" = "vi: error: typo.yaml:3:1: unknown key 'wehn'; did you mean 'when'?" ]
	printf 'name: p1\nvms: [a]\nwhen: cpu.utl > 90\nthen: restart\n' >metric.yaml
	run -2 vi policy add metric.yaml
	[[ $output == "vi: error: metric.yaml:3:7: unknown metric 'cpu.utl'; did you mean 'cpu.util'?" ]]
	printf 'name: p1\nvms: [a]\nwhen: cpu.util > \nthen: restart\n' >cond.yaml
	run -2 vi policy add cond.yaml
	[[ $output == "vi: error: cond.yaml:3:"* ]]
	[ "${#lines[@]}" = 1 ]
	printf 'name: p1\nvms: [a]\nwhen: (cpu.util > 9\nthen: restart\n' >paren.yaml
	run -2 vi policy add paren.yaml
	[[ $output == "vi: error: paren.yaml:3:"* ]]
	printf 'name: p1\nvms: [a]\nwhen: cpu.util > 90\nthen: [restrat]\n' >action.yaml
	run -2 vi policy add action.yaml
	[ "$output" = "vi: error: action.yaml:4:8: unknown action 'restrat'; did you mean 'restart'?" ]
	# A good document beside a bad one: neither is added.
	printf 'name: good\nvms: [a]\nwhen: cpus > 1\nthen: restart\n---\n' >two.yaml
	cat typo.yaml >>two.yaml
	run -2 vi policy add two.yaml
	[ "$output" = "vi: error: two.yaml:8:1: unknown key 'wehn'; did you mean 'when'?" ]
	run -3 vi policy add missing.yaml
	run -0 vi policy list --json
	[ "$(jq '.policies | length' <<<"$output")" = 0 ]
}

@test "plan says what would fire, with the measured value, and acts on nothing" {
	burner b1
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none idle1
	burn_policy "b1, idle1"
	run -0 vi policy plan --json
	[ "$(jq -r '.plan[] | select(.vm == "b1") | .decision' <<<"$output")" = fire ]
	util=$(jq -r '.plan[] | select(.vm == "b1") | .values."cpu.util"' <<<"$output")
	[ "${util%.*}" -gt 80 ]
	[ "$(jq -r '.plan[] | select(.vm == "b1") | .then' <<<"$output")" = "grow cpus +1" ]
	[ "$(jq -r '.plan[] | select(.vm == "idle1") | .decision' <<<"$output")" = unknown ]
	run -0 vi policy plan
	[[ $output == *"burn "*"b1 "*"fire "*"grow cpus +1 "*"holds (cpu.util="*"%); fires once it has held 10s"* ]]
	# At its bound, the plan says so.
	sed 's/^max: .*/max: {cpus: 1}/' "$VI_HOME/policies/burn.yaml" | vi -q policy add --replace -
	run -0 vi policy plan --json
	[[ $(jq -r '.plan[] | select(.vm == "b1") | "\(.decision) \(.why)"' <<<"$output") == "bound holds (cpu.util="*"%); grow: cpus already at 1, its bound max" ]]
	[ "$(cpus_of b1)" = 1 ]
	[ ! -e "$VI_HOME/policies/audit.log" ]
}

@test "the engine grows a busy VM to 2 CPUs, then 3, never 4, and logs each decision" {
	burner b1
	burn_policy b1
	start_engine 1
	wait_for '[ "$(cpus_of b1)" = 2 ]' 60
	wait_console b1 "hotplug: cpu 1 online"
	wait_for '[ "$(cpus_of b1)" = 3 ]' 90
	# Never a fourth: past its cooldown (within which its hold also runs) it is still 3.
	sleep 21
	stop_engine
	[ "$(cpus_of b1)" = 3 ]
	run -0 vi policy log --json --policy burn
	[ "$(jq -r 'select(.action) | "\(.action) \(.result) \(.detail)"' <<<"$output")" = "grow cpus +1 ok cpus 1 -> 2
grow cpus +1 ok cpus 2 -> 3" ]
	# Each decision with the values that made it.
	[ "$(jq -s 'map(select(.action) | .values."cpu.util" > 80) | "\(length) \(all)"' <<<"$output")" = '"2 true"' ]
	run -0 vi policy log
	[[ ${lines[0]} == *" burn b1: grow cpus +1: ok, cpus 1 -> 2 (cpu.util="* ]]
	run -0 vi policy list --json
	[ "$(jq -r '.policies[0].last.action' <<<"$output")" = "grow cpus +1" ]
	[ "$(jq -r '.engine' <<<"$output")" = null ]
}

@test "an exec action gets the VM, the policy and the values in its environment" {
	burner b1
	cat >p.yaml <<-EOF
		name: tell
		vms: [b1]
		when: cpu.util > 50 and state == running
		then:
		  - exec: env | grep ^VI_ | sort >"$BATS_TEST_TMPDIR/env.out"
	EOF
	vi -q policy add p.yaml
	run -0 vi policy run --once
	[[ $output == *" tell b1: exec env "*": ok, exit status 0 (state=running cpu.util="* ]]
	grep -qx "VI_VM=b1" env.out
	grep -qx "VI_POLICY=tell" env.out
	grep -qx "VI_ACTION=exec env | grep ^VI_ | sort >\"$BATS_TEST_TMPDIR/env.out\"" env.out
	grep -qx "VI_WHEN=cpu.util > 50 and state == running" env.out
	grep -qx "VI_METRIC_STATE=running" env.out
	util=$(sed -n 's/^VI_METRIC_CPU_UTIL=//p' env.out)
	[ "${util%.*}" -gt 50 ]
}

@test "a VM whose process is killed runs again, and one stopped by its user stays stopped" {
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start k1
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start s1
	wait_console k1 "stamps: gen 1 ok"
	wait_console s1 "stamps: gen 1 ok"
	printf 'name: revive\nvms: ["*"]\nwhen: state == crashed\nthen: restart\n' | vi -q policy add -
	vi -q stop --force s1
	start_engine 2
	pid=$(cat "$VI_HOME/vms/k1/run/pid")
	kill -9 "$pid"
	# Within two intervals, and a little for the boot itself.
	wait_for '[ "$(vi show --json k1 | jq -r .vm.state)" = running ]' 8
	[ "$(cat "$VI_HOME/vms/k1/run/pid")" != "$pid" ]
	wait_console k1 "stamps: gen 1 ok"
	sleep 3
	stop_engine
	[ "$(vi show --json s1 | jq -r .vm.state)" = stopped ]
	run -0 vi policy log --json
	[ "$(jq -r 'select(.action) | "\(.vm) \(.action) \(.result) \(.values.state)"' <<<"$output")" = "k1 restart ok crashed" ]
	grep -q 'revive k1: restart: ok, crashed, started again (state=crashed)' engine.out
}

@test "one engine per store, and a killed engine's successor keeps its cooldown" {
	burner b1
	cat >p.yaml <<-EOF
		name: once
		vms: [b1]
		when: cpu.util > 50
		cooldown: 1h
		then:
		  - exec: echo fired >>"$BATS_TEST_TMPDIR/fired"
	EOF
	vi -q policy add p.yaml
	start_engine 1
	run -5 vi policy run --once
	[ "$output" = "vi: error: a policy engine already runs on this store (pid $engine)" ]
	[ "$(vi policy list --json | jq -r .engine)" = "$engine" ]
	wait_for '[ -s fired ]' 30
	kill -9 "$engine"
	wait "$engine" || true
	engine=
	run -0 vi policy run --once
	[ "$(wc -l <fired)" = 1 ]
	[[ $(vi policy log --json | jq -r 'select(.decision == "cooldown") | .why') == "holds (cpu.util="*"); in its cooldown for "*" more" ]]
}

@test "an action the backend cannot do: plan says so, the engine logs it and goes on" {
	use_fixture_plugins
	echo "not a kernel" >vmlinuz
	vi -q create --hv fixture --kernel vmlinuz --max-cpus 4 --start fx
	cat >p.yaml <<-EOF
		name: more
		vms: [fx]
		when: cpus < 4
		then:
		  - grow: {cpus: +1}
		---
		name: note
		vms: [fx]
		when: cpus >= 1
		then:
		  - exec: echo ran >"$BATS_TEST_TMPDIR/note"
	EOF
	vi -q policy add p.yaml
	run -0 vi policy plan --json
	[ "$(jq -r '.plan[] | select(.policy == "more") | "\(.decision) \(.why)"' <<<"$output")" = \
		"unsupported holds (cpus=1); grow: backend 'fixture' does not support changing the number of vCPUs" ]
	run -0 vi policy run --once
	[ -s note ]
	run -0 vi policy log --json --policy more
	[ "$(jq -r .decision <<<"$output")" = unsupported ]
	[ "$(vi show --json fx | jq -r .vm.cpus)" = 1 ]
}

@test "log: --since and --policy choose, bad input is one line" {
	mkdir -p "$VI_HOME/policies"
	now=$(date +%s)
	{
		echo "{\"vi\":1,\"ts\":$((now - 7200)),\"policy\":\"a\",\"vm\":\"v\",\"decision\":\"fire\",\"values\":{},\"action\":\"restart\",\"result\":\"ok\",\"detail\":\"old\"}"
		echo "{\"vi\":1,\"ts\":$((now - 60)),\"policy\":\"b\",\"vm\":\"v\",\"decision\":\"bound\",\"why\":\"new\",\"values\":{}}"
	} >"$VI_HOME/policies/audit.log"
	run -0 vi policy log --json --since 10m
	[ "$(jq -r .why <<<"$output")" = new ]
	run -0 vi policy log --json --policy a
	[ "$(jq -r .detail <<<"$output")" = old ]
	run -0 vi policy log --since "$(date -d @$((now - 3600)) +%Y-%m-%dT%H:%M)"
	[ "${#lines[@]}" = 1 ]
	[[ ${lines[0]} == *" b v: bound: new" ]]
	run -2 vi policy log --since yesterday
	[ "$output" = "vi: error: --since: 'yesterday' is neither a duration (10m) nor a time (2026-12-04T08:00)" ]
}

@test "plan: labels choose the VMs, across all and avg judge them together, a schedule keeps a policy quiet" {
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --label tier=web --start w1
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --label tier=web w2
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --label tier=db --start d1
	tomorrow=$(LC_ALL=C date -d tomorrow +%a | tr A-Z a-z)
	vi -q policy add - <<-EOF
		name: all-up
		vms: [label:tier=web]
		across: all
		when: state == running
		then: restart
		---
		name: avg-mem
		vms: [label:tier=web]
		across: avg
		when: memory >= 64M
		then: restart
		---
		name: any-up
		vms: [label:tier=web]
		when: state == running
		then: restart
		---
		name: later
		vms: [d1]
		when: state == running
		schedule: $tomorrow 00:00-23:59
		then: restart
	EOF
	run -0 vi policy plan --json
	plan=$output
	decision() { jq -r --arg p "$1" --arg v "$2" '.plan[] | select(.policy == $p and .vm == $v) | .decision' <<<"$plan"; }
	# One of the two is stopped: not all run.
	[ "$(decision all-up '*')" = no ]
	[ "$(decision avg-mem '*')" = fire ]
	[ "$(decision any-up w1)" = fire ]
	[ "$(decision any-up w2)" = no ]
	[ -z "$(decision any-up d1)" ]
	[ "$(decision later d1)" = schedule ]
	[ "$(jq -r '.plan[] | select(.policy == "later") | .why' <<<"$plan")" = "outside its schedule '$tomorrow 00:00-23:59'" ]
	vi -q start w2
	run -0 vi policy plan --json
	plan=$output
	[ "$(decision all-up '*')" = fire ]
}

@test "a snapshot action keeps the policy's last N snapshots, and the engine stops and starts VMs" {
	vi -q create --hv "$hv" --kernel "$guest/stamps.bzImage" --memory 64M --nic none --start v1
	wait_console v1 "stamps: gen 1 ok"
	vi -q snapshot create v1 mine
	printf 'name: keep2\nvms: [v1]\nwhen: state == running\nthen:\n  - snapshot: {keep: 2}\n' |
		vi -q policy add -
	for i in 1 2 3; do
		vi -q policy run --once
		sleep 1 # the snapshots are named to the second
	done
	run -0 vi snapshot list --json v1
	[ "$(jq -r '[.snapshots[].name | select(startswith("keep2-"))] | length' <<<"$output")" = 2 ]
	[ "$(jq -r '[.snapshots[].name | select(. == "mine")] | length' <<<"$output")" = 1 ]
	[ "$(vi policy log --json | jq -r 'select(.action) | .result' | sort -u)" = ok ]
	vi -q policy rm keep2
	printf 'name: down\nvms: [v1]\nwhen: state == running\nthen: stop\n' | vi -q policy add -
	vi -q policy run --once
	[ "$(vi show --json v1 | jq -r .vm.state)" = stopped ]
	vi -q policy rm down
	printf 'name: up\nvms: [v1]\nwhen: state == stopped\nthen: [start]\n' | vi -q policy add -
	vi -q policy run --once
	[ "$(vi show --json v1 | jq -r .vm.state)" = running ]
}
