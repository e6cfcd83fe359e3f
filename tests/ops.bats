#!/usr/bin/env bats
# create, clone and destroy are all or nothing: a backend that fails part way
# leaves the store, the layers and the backend as they were (or, for a VM
# that was made but did not start, exactly that VM).

load lib/common

setup() {
	common_setup
	use_fixture_plugins
	cd "$BATS_TEST_TMPDIR"
	golden_image
}

vms() { vi list --json | jq -r '[.vms[].name] | join(",")'; }
# src, its linked clone c1 with data of its own, and c1's clone c2: a store
# with a frozen layer.
clone_chain() {
	vi -q create --hv fixture --disk "$PWD/golden.qcow2" src
	vi -q clone src c1
	qemu-io -c 'write -P 0x22 0 64k' "$VI_HOME/vms/c1/disks/golden.qcow2" >/dev/null
	vi -q clone c1 c2
}
staging_empty() { [ -z "$(ls -A "$VI_HOME/vms/.staging")" ]; }

@test "a definition the backend refuses leaves no VM and no staging behind" {
	VI_FIXTURE_FAIL=define run -1 vi create --hv fixture --disk "$PWD/golden.qcow2" vm1
	[ "$output" = "vi: error: fixture was told to fail define" ]
	[ ! -e "$VI_HOME/vms/vm1" ]
	staging_empty
	[ "$(vms)" = "" ]
	# The name is free again.
	run -0 vi -q create --hv fixture --disk "$PWD/golden.qcow2" vm1
}

@test "a VM that was made but did not start is kept, stopped; with --rm it goes" {
	VI_FIXTURE_FAIL=start run -1 vi create --hv fixture --disk "$PWD/golden.qcow2" --start vm1
	[ "$output" = "vi: error: VM 'vm1' was created but did not start: fixture was told to fail start" ]
	[ "$(vi show --json vm1 | jq -r .vm.state)" = stopped ]
	run -0 vi start vm1

	VI_FIXTURE_FAIL=start run -1 vi create --hv fixture --disk "$PWD/golden.qcow2" --rm \
		--wait-ready vm2 -- true
	[ "$output" = "vi: error: VM 'vm2' was created but did not start: fixture was told to fail start" ]
	[ ! -e "$VI_HOME/vms/vm2" ]
	[ "$(vms)" = vm1 ]
}

@test "a clone that fails to start takes the clones made before it along; the source keeps its layer" {
	vi -q create --hv fixture --disk "$PWD/golden.qcow2" src
	VI_FIXTURE_FAIL=start:c-2 run -1 vi clone --count 3 --start src c
	[ "$output" = "vi: error: clone 'c-2' did not start: fixture was told to fail start" ]
	[ "$(vms)" = src ]
	staging_empty
	# The source went on an overlay of its disk, which it keeps; no layer
	# records a clone.
	src=$VI_HOME/vms/src/disks/golden.qcow2
	[ "$(qemu-img info --output=json "$src" | jq -r '."backing-filename"')" = "$PWD/golden.qcow2" ]
	run -0 qemu-img check "$src"
	! grep -q "vm:c-" "$VI_HOME/images/layers/index.yaml" || false
	[ -z "$(ls "$VI_HOME/vms" | grep '^c-')" ]
	# And cloning works once the backend does.
	run -0 vi -q clone --count 3 src c
	[ "$(vms)" = "c-1,c-2,c-3,src" ]
}

@test "a clone whose definition the backend refuses: none is made" {
	vi -q create --hv fixture --disk "$PWD/golden.qcow2" src
	VI_FIXTURE_FAIL=define:c-3 run -1 vi clone --count 3 src c
	[ "$output" = "vi: error: fixture was told to fail define" ]
	[ "$(vms)" = src ]
	staging_empty
	[ -z "$(ls "$VI_HOME/vms" | grep '^c-')" ]
}

@test "destroy of a VM whose backend fails keeps it unless --force" {
	vi -q create --hv fixture --disk "$PWD/golden.qcow2" --start vm1
	echo stop >"$VI_HOME/vms/vm1/run/fixture-fail"
	run -1 vi destroy vm1
	[ "$output" = "vi: error: fixture was told to fail stop" ]
	[ "$(vms)" = vm1 ]
	run -0 vi destroy --force vm1
	[ "${lines[0]}" = "vi: warning: fixture was told to fail stop; removing VM 'vm1' anyway" ]
	[ "$(vms)" = "" ]
}

@test "clone --count killed part way: after the next command, all or nothing, nothing staged" {
	vi -q create --hv fixture --disk "$PWD/golden.qcow2" src
	VI_FIXTURE_DEFINE_MS=100 vi -q clone --count 20 src c &
	pid=$!
	sleep 0.7
	kill -9 "$pid"
	wait "$pid" || true
	# Some clones made it into the store before the kill.
	[ -n "$(ls "$VI_HOME/vms" | grep '^c-')" ] || [ -n "$(ls -A "$VI_HOME/vms/.staging")" ]
	run -0 vi list
	[ "$(vms)" = src ]
	staging_empty
	! grep -q "vm:c-" "$VI_HOME/images/layers/index.yaml" 2>/dev/null || false
	# A retry makes the whole set, and each clone starts and goes.
	run -0 vi -q clone --count 20 src c
	for c in $(seq 20); do
		run -0 qemu-img check "$VI_HOME/vms/c-$c/disks/golden.qcow2"
		run -0 vi -q start "c-$c"
		run -0 vi -q destroy "c-$c"
	done
	[ "$(vms)" = src ]
}

@test "create killed while its backend defines it: after the next command, no VM, nothing staged" {
	VI_FIXTURE_DEFINE_MS=2000 vi -q create --hv fixture --disk "$PWD/golden.qcow2" vm1 &
	pid=$!
	for _ in $(seq 50); do [ -n "$(ls -A "$VI_HOME/vms/.staging" 2>/dev/null)" ] && break; sleep 0.1; done
	kill -9 "$pid"
	wait "$pid" || true
	run -0 vi list
	[ "$(vms)" = "" ]
	staging_empty
	run -0 vi -q create --hv fixture --disk "$PWD/golden.qcow2" vm1
	run -0 vi -q start vm1
	run -0 vi -q destroy vm1
}

@test "a half-removed VM a killed destroy left is cleaned by the next command" {
	vi -q create --hv fixture --disk "$PWD/golden.qcow2" vm1
	mv "$VI_HOME/vms/vm1" "$VI_HOME/vms/.staging/vm1.removed.99999999"
	# And an image build a kill stopped, with libguestfs's files in it.
	local build=$VI_HOME/images/.new-$(printf '%064d' 0)-99999999-aBcDeF
	mkdir -p "$build/.tmp/libguestfsXYZ"
	run -0 vi list
	staging_empty
	[ ! -e "$build" ]
}

@test "another user reads nothing of a VM, its clones or their layers" {
	clone_chain
	chmod o+x "$BATS_TEST_TMPDIR"
	[ -n "$(ls "$VI_HOME/images/layers/"*.qcow2)" ]
	nothing_readable_by_others "$VI_HOME"
	# The directories let guests through to their disks, and list nothing.
	[ "$(stat -c %a "$VI_HOME/vms/c1/disks")" = 711 ]
	! setpriv --reuid=65534 --regid=65534 --clear-groups -- ls "$VI_HOME/vms" >/dev/null 2>&1 || false
	# Frozen layers: root's, read-only, for the guests' group to read.
	for f in "$VI_HOME/images/layers/"*.qcow2; do
		[ "$(stat -c '%a %U' "$f")" = "440 root" ]
	done
}

@test "a store written before it was private is made so once" {
	clone_chain
	# As the previous release left it.
	find "$VI_HOME" -type f -exec chmod 0644 {} +
	rm "$VI_HOME/.private"
	run -0 vi list
	[ -f "$VI_HOME/.private" ]
	[ "$(stat -c %a "$VI_HOME/vms/c1/vm.yaml")" = 600 ]
	[ "$(stat -c %a "$VI_HOME/vms/c2/disks/golden.qcow2")" = 600 ]
	for f in "$VI_HOME/images/layers/"*.qcow2; do
		[ "$(stat -c '%a %U' "$f")" = "440 root" ]
	done
	run -0 vi start c2
}

@test "create --rm --start NAME -- CMD runs CMD against the machine, then destroys it" {
	run -3 vi create --hv fixture --disk "$PWD/golden.qcow2" --rm --start vm1 -- \
		sh -c 'vi show --json "$VI_VM" | jq -r .vm.state; exit 3'
	[ "${lines[0]}" = "created VM 'vm1' on fixture: 1 vCPU, 512M, running" ]
	[ "${lines[1]}" = running ]
	[ "$(vms)" = "" ]
	run -2 vi create --hv fixture --disk "$PWD/golden.qcow2" --rm vm1 -- true
	[ "$output" = "vi: error: a command after -- needs --start or --wait-ready" ]
}

@test "create --rm: SIGTERM to vi alone ends the command too, and the machine goes" {
	vi create --hv fixture --disk "$PWD/golden.qcow2" --rm --start vm1 -- \
		sh -c 'trap "echo TERM >got; exit 143" TERM; : >ran; for i in $(seq 100); do sleep 0.1; done' \
		2>err &
	local pid=$! status=0
	for i in $(seq 100); do [ -e ran ] && break; sleep 0.1; done
	kill -TERM "$pid"
	wait "$pid" || status=$?
	[ "$status" = 1 ]
	[ "$(tail -n 1 err)" = "vi: error: interrupted by SIGTERM" ]
	[ "$(cat got)" = TERM ]
	[ "$(vms)" = "" ]
}

@test "create --rm: a reader gone from stdout does not leave the machine behind" {
	# fd 6: a pipe whose reader has closed it.
	mkfifo fifo
	exec 5<>fifo 6>fifo 5<&-
	run -141 bash -c 'exec vi create --json --hv fixture --disk "$PWD/golden.qcow2" --rm --start vm1 -- true >&6'
	[ "$output" = "" ]
	exec 6>&-
	[ "$(vms)" = "" ]
	staging_empty
}

@test "destroy --force takes a VM whose definition cannot be read" {
	mkdir -p "$VI_HOME/vms/broken"
	mkfifo "$VI_HOME/vms/broken/vm.yaml"
	run -2 vi destroy broken
	[ "$output" = "vi: error: cannot read '$VI_HOME/vms/broken/vm.yaml': not a regular file" ]
	run -0 vi destroy --force broken
	[ "${lines[0]}" = "vi: warning: cannot read '$VI_HOME/vms/broken/vm.yaml': not a regular file; removing VM 'broken' anyway" ]
	[ "${lines[1]}" = "destroyed VM 'broken'" ]
	[ ! -e "$VI_HOME/vms/broken" ]
}

@test "an index write a kill cut short is cleared; the last VM takes the layer store along" {
	clone_chain
	echo 'half' >"$VI_HOME/images/layers/index.yaml.tmp.99999999"
	for vm in c2 c1 src; do
		run -0 vi -q destroy "$vm"
	done
	[ ! -e "$VI_HOME/images/layers" ]
}
