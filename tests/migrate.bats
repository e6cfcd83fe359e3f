#!/usr/bin/env bats
# vi migrate between hosts of the test harness (tests/lib/hosts.bash): this
# machine's store is the source, host h1 (its own sshd and store) the
# destination.

load lib/common
load lib/hosts

setup() {
	common_setup
	cd "$BATS_TEST_TMPDIR"
	hosts_setup 2
	hv=svm
	grep -q GenuineIntel /proc/cpuinfo && hv=vtx
	kernel=$VI_BUILD/tests/guest/stamps.bzImage
	for i in 1 2; do
		vi -q host add "h$i" "$(host_uri "$i")" --home "$(host_home "$i")" --vi "$VI_BUILD/vi"
	done
}

teardown() {
	host_run 1 umount "$(host_home 1)/vms" 2>/dev/null || true
	for h in h1 h2; do
		for vm in $(vi --host "$h" list --json 2>/dev/null | jq -r '.vms[].name'); do
			vi -q --host "$h" destroy --force "$vm" || true
		done
	done
	for vm in $(vi list --json 2>/dev/null | jq -r '.vms[].name'); do
		vi -q destroy --force "$vm" || true
	done
	hosts_teardown
}

# Waits (10 s at most) for a VM's process to have exited: gone, or a zombie
# its parent has not reaped yet.
vmm_gone() { # PID
	for _ in $(seq 500); do
		[ -n "$(hosts_proc_id "$1")" ] || return 0
		sleep 0.02
	done
	echo "process $1 still runs: $(cat "/proc/$1/cmdline" | tr '\0' ' ')"
	return 1
}

# A VM with a disk of its own in the store, on a layer a snapshot froze, and data
# written after it: disk path inside the store, layer and overlay both hold data.
layered_vm() { # NAME
	qemu-img create -q -f qcow2 "$BATS_TEST_TMPDIR/base.qcow2" 64M
	qemu-io -f qcow2 -c "write -P 0x11 0 1M" "$BATS_TEST_TMPDIR/base.qcow2" >/dev/null
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none \
		--disk "$BATS_TEST_TMPDIR/base.qcow2" "$1"
	vi -q snapshot create "$1" s1
	disk=$(vi show --json "$1" | jq -r '.vm.disks[0].path')
	qemu-io -f qcow2 -c "write -P 0x22 1M 1M" "$disk" >/dev/null
	vi -q snapshot create "$1" s2
	disk=$(vi show --json "$1" | jq -r '.vm.disks[0].path')
	qemu-io -f qcow2 -c "write -P 0x33 2M 1M" "$disk" >/dev/null
}

@test "a stopped VM moves with its disks, layers and snapshots, and nothing of it stays" {
	layered_vm web
	disk=$(vi show --json web | jq -r '.vm.disks[0].path')
	qemu-img convert -O raw "$disk" now.raw
	s1=$(vi snapshot show --json web s1 | jq -r '.snapshot.disks[0].image // .definition.disks[0].image')
	run -0 vi migrate web h1
	[[ "$output" == "moved VM 'web' to host 'h1' (stopped): "*" copied in "* ]]
	# Gone from here, with its layers; there, stopped, with the same disks.
	[ ! -e "$VI_HOME/vms/web" ]
	[ -z "$(vi list --json | jq -r '.vms[].name')" ]
	[ "$(vi --host h1 list --json | jq -r '.vms[] | "\(.name) \(.state)"')" = "web stopped" ]
	there=$(vi --host h1 show --json web | jq -r '.vm.disks[0].path')
	[[ "$there" == "$(host_home 1)/"* ]]
	qemu-img compare -q now.raw "$there"
	run -0 vi --host h1 snapshot list --json web
	[ "$(jq -r '[.snapshots[].name] | join(" ")' <<<"$output")" = "s1 s2" ]
	for f in "$(host_home 1)"/vms/web/disks/* "$(host_home 1)"/images/layers/*.qcow2; do
		[ -e "$f" ] || continue
		qemu-img check -q "$f"
		# Every backing file is in that store or outside both, never in this one.
		! qemu-img info "$f" | grep -q "backing file: $VI_HOME" || false
	done
	# The snapshots check out there.
	run -0 vi --host h1 snapshot checkout --discard web s1
	there=$(vi --host h1 show --json web | jq -r '.vm.disks[0].path')
	[ "$(qemu-io -f qcow2 -c "read -P 0x11 0 1M" -c "read -P 0 1M 1M" "$there" | grep -c 'read 1048576')" = 2 ]
	run -0 vi --host h1 start web
}

@test "bad input: one line, a documented status, and nothing moved" {
	layered_vm web
	cp "$VI_HOME/vms/web/vm.yaml" before.yaml
	run -3 vi migrate web nowhere
	[ "$output" = "vi: error: unknown host 'nowhere' (see 'vi host list')" ]
	run -3 vi migrate nope h1
	[ "${#lines[@]}" = 1 ]
	run -2 vi migrate --downtime 0 web h1
	[ "$output" = "vi: error: --downtime must be at least 1 ms" ]
	run -2 vi migrate --converge maybe web h1
	[ "$output" = "vi: error: --converge takes auto, pause or abort, not 'maybe'" ]
	host_link_down 2
	run -1 vi migrate web h2
	[ "${#lines[@]}" = 1 ]
	[[ "$output" == "vi: error: cannot reach host 'h2': ssh: connect to host $(host_addr 2) port 22: "* ]]
	host_link_up 2
	# A VM of that name there already.
	vi -q --host h1 create --hv "$hv" --kernel "$kernel" --nic none web
	run -5 vi migrate web h1
	echo "$output"
	[ "$output" = "vi: error: VM 'web' exists on host 'h1'" ]
	vi -q --host h1 destroy web
	# A running VM is not stopped to move it offline.
	vi -q start web
	run -5 vi migrate --offline web h1
	[ "$output" = "vi: error: VM 'web' is running: stop it first, or leave out --offline to move it live" ]
	vi -q stop --force web
	cmp before.yaml "$VI_HOME/vms/web/vm.yaml"
	[ -z "$(vi --host h1 list --json | jq -r '.vms[].name')" ]
	[ -z "$(ls -A "$(host_home 1)/vms/.staging" 2>/dev/null)" ]
}

@test "--check says in one line each what a move needs, and moves nothing" {
	layered_vm web
	run -0 vi migrate --check web h1
	[[ "$output" == *"ok   backend    $hv is usable on host 'h1'"* ]]
	[[ "$output" == *"ok   name       no VM 'web' on host 'h1'"* ]]
	[[ "$output" == *"ok   copy       "*" to copy"* ]]
	[[ "$output" == *"ok   shared     $BATS_TEST_TMPDIR/base.qcow2 must be at the same path there"* ]]
	run -0 vi migrate --check --json web h1
	[ "$(jq -r .ok <<<"$output")" = true ]
	vi -q --host h1 create --hv "$hv" --kernel "$kernel" --nic none web
	run -5 vi migrate --check web h1
	[[ "$output" == *"FAIL name       VM 'web' exists on host 'h1'"* ]]
	[ -e "$VI_HOME/vms/web/vm.yaml" ]
}

log_of() { tr -d "\r" <"$1/vms/$2/run/console.log" 2>/dev/null; }
gens() { log_of "$1" "$2" | sed -n 's/^stamps: gen \([0-9]*\) ok$/\1/p'; }
wait_gen() { # HOME NAME GEN
	for _ in $(seq 300); do
		g=$(gens "$1" "$2" | tail -1)
		[ -n "$g" ] && [ "$g" -ge "$3" ] && return 0
		sleep 0.1
	done
	echo "generation $3 not reached in $1:"
	log_of "$1" "$2" | tail -3
	return 1
}

@test "a running guest moves live and keeps counting there, and nothing of it stays here" {
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --start live
	wait_gen "$VI_HOME" live 3
	before=$(gens "$VI_HOME" live | tail -1)
	pid=$(cat "$VI_HOME/vms/live/run/pid")
	run -0 vi migrate live h1
	[[ "$output" == "moved VM 'live' to host 'h1', running: "*" paused "*" ms, "*" iterations" ]]
	[ ! -e "$VI_HOME/vms/live" ]
	vmm_gone "$pid"
	[ "$(vi --host h1 list --json | jq -r '.vms[] | "\(.name) \(.state)"')" = "live running" ]
	wait_gen "$(host_home 1)" live $((before + 3))
	# It went on from where it was: no new start, no bad page.
	! log_of "$(host_home 1)" live | grep -q "stamps: start" || false
	! log_of "$(host_home 1)" live | grep -q CORRUPT || false
	[ "$(gens "$(host_home 1)" live | head -1)" -gt "$before" ]
}

@test "a policy moves a running guest live to the least loaded host, and the log says where" {
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --start busy
	wait_gen "$VI_HOME" busy 2
	# h1 runs a VM already: h2 is the less loaded of two with memory to spare.
	vi -q --host h1 create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --start other
	printf 'name: spread\nvms: [busy]\nwhen: state == running\nthen:\n  - migrate: least-loaded\n' |
		vi -q policy add -
	run -0 vi policy plan --json
	[ "$(jq -r '.plan[] | select(.vm == "busy") | "\(.decision) \(.then)"' <<<"$output")" = "fire migrate least-loaded" ]
	run -0 vi policy run --once
	[[ $output == *" spread busy: migrate least-loaded: ok, moved to host 'h2' live in "*" s (state=running)" ]]
	[ ! -e "$VI_HOME/vms/busy" ]
	[ "$(vi --host h2 list --json | jq -r '.vms[] | "\(.name) \(.state)"')" = "busy running" ]
	before=$(gens "$(host_home 2)" busy | tail -1)
	wait_gen "$(host_home 2)" busy $((before + 2))
	# The VM is gone from here: the engine's next sample has nothing to move.
	run -0 vi policy run --once
	[ "$(vi policy log --json | jq -r 'select(.action) | "\(.vm) \(.result)"')" = "busy ok" ]
}

@test "--tunnel: the guest moves through ssh alone and keeps counting there" {
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --start live
	wait_gen "$VI_HOME" live 3
	before=$(gens "$VI_HOME" live | tail -1)
	run -0 vi migrate --tunnel --json live h1
	[ "$(jq -r '"\(.live) \(.host)"' <<<"${lines[-1]}")" = "true h1" ]
	[ "$(jq -r '.iterations > 0 and .downtime_ms > 0' <<<"${lines[-1]}")" = true ]
	[ ! -e "$VI_HOME/vms/live" ]
	[ "$(vi --host h1 list --json | jq -r '.vms[] | "\(.name) \(.state)"')" = "live running" ]
	wait_gen "$(host_home 1)" live $((before + 3))
	! log_of "$(host_home 1)" live | grep -q "stamps: start" || false
	! log_of "$(host_home 1)" live | grep -q CORRUPT || false
}

@test "--tunnel: the destination killed midway leaves the guest running here, one line" {
	kill_destination_midway --tunnel
}

# A template whose image builds at once: its disk empty, its kernel the stamps
# test kernel: stamps_template NAME
stamps_template() {
	export VI_TEMPLATE_PATH=$BATS_TEST_TMPDIR/t
	mkdir -p "$VI_TEMPLATE_PATH"
	cp "$kernel" "$VI_TEMPLATE_PATH/stamps.bzImage"
	printf '%s\n' "name: $1" "kernel: stamps.bzImage" "hv: $hv" "memory: 64M" \
		"disks: [{size: 8M, source: empty}]" >"$VI_TEMPLATE_PATH/$1.yaml"
	vi -q template build "$1"
}

@test "VMs from a template move live, and the golden image goes to the host once" {
	stamps_template st
	digest=$(vi template show --json st | jq -r .image_digest)
	vi -q create --template st --nic none --start a
	vi -q create --template st --nic none --start b
	wait_gen "$VI_HOME" a 2
	run -0 vi migrate --check a h1
	[[ "$output" == *"golden image included"* ]]
	run -0 vi migrate --json a h1
	first=$(jq -r .file_bytes <<<"${lines[-1]}")
	[ -d "$(host_home 1)/images/$digest" ]
	# Here the image stays, for b and the next VMs; there it is cached.
	[ -d "$VI_HOME/images/$digest" ]
	run -0 vi migrate --check b h1
	[[ "$output" == *"golden image there already"* ]]
	run -0 vi migrate --json b h1
	second=$(jq -r .file_bytes <<<"${lines[-1]}")
	image=$(du -sb "$VI_HOME/images/$digest" | cut -f1)
	# The second move's files carried no image: less than the first's by about
	# its size.
	[ "$second" -lt $((first - image / 2)) ]
	[ "$(vi --host h1 list --json | jq -r '[.vms[] | "\(.name) \(.state) \(.template)"] | join(",")')" = "a running st,b running st" ]
	[ "$(vi --host h1 show --json b | jq -r .vm.template_digest)" = "$digest" ]
	wait_gen "$(host_home 1)" b 4
	! log_of "$(host_home 1)" b | grep -q CORRUPT || false
}

@test "vi --host h1 migrate VM h2: from one host to another, from here" {
	# h1 knows h2 by its own inventory, added through h1.
	run -0 vi --host h1 host add h2 "$(host_uri 2)" --home "$(host_home 2)" --vi "$VI_BUILD/vi"
	[ "$(vi --host h1 host show --json h2 | jq -r .host.home)" = "$(host_home 2)" ]
	vi -q --host h1 create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --start far
	wait_gen "$(host_home 1)" far 2
	run -0 vi --host h1 migrate far h2
	[[ "$output" == "moved VM 'far' to host 'h2', running: "* ]]
	run -0 vi list --all-hosts --json
	[ "$(jq -r '[.vms[] | "\(.host) \(.name) \(.state)"] | join(",")' <<<"$output")" = "h2 far running" ]
	g=$(gens "$(host_home 2)" far | tail -1)
	wait_gen "$(host_home 2)" far $((g + 2))
	! log_of "$(host_home 2)" far | grep -q CORRUPT || false
}

# Pauses a native VM through its control socket, as the source's VMM is left
# when a migration's "running" never comes back: pause_vm NAME
pause_vm() {
	python3 - "$VI_HOME/vms/$1/run/control.sock" <<'PY'
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
req = json.dumps({"cmd": "pause"}).encode()
s.sendall(struct.pack(">I", len(req)) + req)
n = struct.unpack(">I", s.recv(4))[0]
reply = json.loads(s.recv(n))
sys.exit(0 if reply.get("ok") else 1)
PY
}

# The window between commit and "running" cannot be hit on purpose: the state a
# lost answer leaves (the VM paused here, marked) is made by hand, and the
# rest is vi's.
@test "an unconfirmed migration: start refuses, show says, --recover resumes a guest the host lacks" {
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --start live
	wait_gen "$VI_HOME" live 3
	pause_vm live
	echo h1 >"$VI_HOME/vms/live/migrating"
	vi -q stop --force live
	run -5 vi start live
	[ "$output" = "vi: error: VM 'live' may be running on host 'h1', its migration unconfirmed: settle it with 'vi migrate --recover live'" ]
	run -0 vi show live
	[[ "$output" == *"migration:   to host 'h1', unconfirmed (vi migrate --recover live)"* ]]
	[ "$(vi show --json live | jq -r .vm.migrating_to)" = h1 ]
	run -2 vi migrate --recover live h1
	[ "$output" = "vi: error: --recover takes the VM alone: vi migrate --recover VM" ]
	run -0 vi migrate --recover live
	[ "$output" = "VM 'live' is not on host 'h1' and stopped here: 'vi start live' boots it" ]
	run -5 vi migrate --recover live
	[ "$output" = "vi: error: VM 'live' has no unconfirmed migration to settle" ]
	run -0 vi start live
	wait_gen "$VI_HOME" live 2
	# Paused and marked, the host lacking it: it resumes where it was.
	pause_vm live
	g=$(gens "$VI_HOME" live | tail -1)
	echo h1 >"$VI_HOME/vms/live/migrating"
	run -0 vi migrate --recover --json live
	[ "$(jq -r .runs <<<"$output")" = here ]
	[ "$(vi show --json live | jq -r '"\(.vm.state) \(.vm.migrating_to)"')" = "running null" ]
	wait_gen "$VI_HOME" live $((g + 2))
	! log_of "$VI_HOME" live | grep -q CORRUPT || false
}

@test "--recover of a VM that runs on the other host removes the paused copy here" {
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --start live
	wait_gen "$VI_HOME" live 3
	# Its twin there, as the destination has it once it runs.
	vi -q --host h1 create --hv "$hv" --kernel "$kernel" --memory 64M --nic none live
	pause_vm live
	echo h1 >"$VI_HOME/vms/live/migrating"
	pid=$(cat "$VI_HOME/vms/live/run/pid")
	run -0 vi migrate --recover live
	[ "$output" = "VM 'live' is on host 'h1': its paused copy here is removed" ]
	[ ! -e "$VI_HOME/vms/live" ]
	vmm_gone "$pid"
	[ "$(vi --host h1 list --json | jq -r '.vms[].name')" = live ]
}

@test "--recover with the other host unreachable changes nothing" {
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --start live
	wait_gen "$VI_HOME" live 3
	pause_vm live
	echo h1 >"$VI_HOME/vms/live/migrating"
	host_link_down 1
	run -1 vi migrate --recover live
	[ "${#lines[@]}" = 1 ]
	[[ "$output" == "vi: error: cannot reach host 'h1': "*"; VM 'live' stays paused here" ]]
	[ "$(vi show --json live | jq -r '"\(.vm.state) \(.vm.migrating_to)"')" = "paused h1" ]
	host_link_up 1
}

# The port host 1 listens on for a migration, once it does: listen_port ADDR
listen_port() {
	for _ in $(seq 100); do
		p=$(ip netns exec "$(host_ns 1)" ss -Htln "src $1" | awk '$4 !~ /:22$/ { sub(/.*:/, "", $4); print $4; exit }')
		[ -n "$p" ] && { echo "$p"; return 0; }
		sleep 0.05
	done
	return 1
}

@test "a connection to the migration port without the secret is turned away, said, and the migration goes on" {
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --start live
	wait_gen "$VI_HOME" live 3
	# Slow enough to knock on its port meanwhile, fast enough to converge.
	vi migrate --bandwidth 4M --downtime 2000 live h1 >"$BATS_TEST_TMPDIR/out" 2>&1 &
	mig=$!
	port=$(listen_port "$(host_addr 1)")
	echo "not the secret" >"/dev/tcp/$(host_addr 1)/$port" || true
	wait "$mig"
	grep -q "^vi: warning: refused a migration connection from [0-9.]*: " "$BATS_TEST_TMPDIR/out"
	grep -q "^moved VM 'live' to host 'h1', running" "$BATS_TEST_TMPDIR/out"
	[ "$(vi --host h1 list --json | jq -r '.vms[].state')" = running ]
}

# Starts a live migration to h1 (with the options given), kills that host once
# the guest's stream is under way, and checks the guest runs on here, the one
# line said, and nothing there: kill_destination_midway [OPTION...]
kill_destination_midway() {
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --start live
	wait_gen "$VI_HOME" live 3
	vi migrate "$@" --bandwidth 1M live h1 >"$BATS_TEST_TMPDIR/out" 2>&1 &
	mig=$!
	# Under way: a port open there, or through ssh the VM staged there.
	if [ "${1:-}" = --tunnel ]; then
		for _ in $(seq 100); do
			[ -n "$(ls "$(host_home 1)/vms/.staging" 2>/dev/null)" ] && break
			sleep 0.05
		done
		sleep 1
	else
		listen_port "$(host_addr 1)" >/dev/null
		sleep 0.5
	fi
	host_kill 1
	st=0
	wait "$mig" || st=$?
	[ "$st" -ne 0 ]
	cat "$BATS_TEST_TMPDIR/out"
	[ "$(grep -c '^vi: error: ' "$BATS_TEST_TMPDIR/out")" = 1 ]
	g=$(gens "$VI_HOME" live | tail -1)
	[ "$(vi show --json live | jq -r .vm.state)" = running ]
	wait_gen "$VI_HOME" live $((g + 2))
	! log_of "$VI_HOME" live | grep -q CORRUPT || false
	# That store, as its own vi sees it: no VM.
	[ -z "$(vi --home "$(host_home 1)" list --json | jq -r '.vms[].name')" ]
	[ -z "$(ls -A "$(host_home 1)/vms/.staging")" ]
}

@test "the destination killed midway: the guest runs on here, one line, nothing there" {
	kill_destination_midway
}

@test "the link cut midway: --timeout gives up, and the guest runs on here" {
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --start live
	wait_gen "$VI_HOME" live 3
	vi migrate --bandwidth 1M --timeout 3 live h1 >"$BATS_TEST_TMPDIR/out" 2>&1 &
	mig=$!
	listen_port "$(host_addr 1)" >/dev/null
	sleep 0.5
	host_link_down 1
	st=0
	wait "$mig" || st=$?
	[ "$st" -ne 0 ]
	cat "$BATS_TEST_TMPDIR/out"
	[ "$(grep -c '^vi: error: ' "$BATS_TEST_TMPDIR/out")" = 1 ]
	[ "$(vi show --json live | jq -r .vm.state)" = running ]
	g=$(gens "$VI_HOME" live | tail -1)
	wait_gen "$VI_HOME" live $((g + 2))
	host_link_up 1
}

@test "a disk both hosts see at the same path is handed over live, not copied" {
	qemu-img create -q -f qcow2 shared.qcow2 256M
	qemu-io -f qcow2 -c "write -P 0x5a 0 32M" shared.qcow2 >/dev/null
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --disk "$PWD/shared.qcow2" --start sh
	wait_gen "$VI_HOME" sh 2
	run -0 vi migrate --json sh h1
	report=$(tail -1 <<<"$output")
	# Memory only: 32M of disk data would show.
	[ "$(jq -r .bytes <<<"$report")" -lt $((24 << 20)) ]
	[ "$(vi --host h1 show --json sh | jq -r '.vm.disks[0].path')" = "$PWD/shared.qcow2" ]
	[ "$(vi --host h1 show --json sh | jq -r .vm.state)" = running ]
	g=$(gens "$(host_home 1)" sh | tail -1)
	wait_gen "$(host_home 1)" sh $((g + 2))
	# The destination's VMM holds it now, so nothing here may write it.
	! qemu-img check -q shared.qcow2 2>/dev/null || false
	vi -q --host h1 stop --force sh
	qemu-img check -q shared.qcow2
}

@test "the destination's disk full midway: the guest runs on here, one line, nothing there" {
	# The data is in an overlay in the store, which travels: 12M for a 4M file system.
	qemu-img create -q -f qcow2 data.qcow2 32M
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --disk data.qcow2 full
	vi -q snapshot create full s1
	qemu-io -f qcow2 -c "write -P 0x5a 0 12M" "$(vi show --json full | jq -r '.vm.disks[0].path')" >/dev/null
	vi -q start full
	wait_gen "$VI_HOME" full 2
	full=$(host_home 1)/vms
	mkdir -p "$full"
	host_run 1 mount -t tmpfs -o size=4M tmpfs "$full"
	st=0
	vi migrate full h1 >out 2>&1 || st=$?
	cat out
	host_run 1 umount "$full"
	[ "$st" -ne 0 ]
	[ "$(wc -l <out)" = 1 ]
	grep -q "^vi: error: .*No space left on device" out
	[ "$(vi show --json full | jq -r .vm.state)" = running ]
	g=$(gens "$VI_HOME" full | tail -1)
	wait_gen "$VI_HOME" full $((g + 2))
	[ -z "$(vi --host h1 list --json | jq -r '.vms[].name')" ]
	qemu-img check -U -q "$(vi show --json full | jq -r '.vm.disks[0].path')"
}

@test "a backend that cannot move a running VM refuses, exit 4, nothing moved" {
	use_fixture_plugins
	echo "not a kernel" >vmlinuz
	vi -q create --hv fixture --kernel vmlinuz --start fx
	run -4 vi migrate fx h1
	[ "$output" = "vi: error: backend 'fixture' cannot move a running VM yet: stop VM 'fx' and use --offline" ]
	[ "$(vi show --json fx | jq -r .vm.state)" = running ]
}
