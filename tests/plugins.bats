#!/usr/bin/env bats
# The plugin loader as a user sees it: vi hv list and vi caps with working,
# older and broken plugins side by side.

load lib/common

setup() {
	common_setup
	use_all_fixture_plugins
}

@test "broken plugins are reported in one line each, naming the file and the reason" {
	run -0 --separate-stderr vi hv list
	local dir=$VI_PLUGIN_DIR
	[[ $stderr == *"vi: warning: cannot load plugin '$dir/hv-badabi.so': invalid plugin ABI version 0"* ]]
	[[ $stderr == *"vi: warning: cannot load plugin '$dir/hv-newer.so': plugin ABI version 3 is newer than this vi supports (2)"* ]]
	[[ $stderr == *"vi: warning: cannot load plugin '$dir/hv-abi1.so': plugin ABI version 1 is older than this vi supports (2): rebuild the plugin"* ]]
	[[ $stderr == *"vi: warning: cannot load plugin '$dir/hv-nosym.so': no symbol 'vi_hv_plugin_init'"* ]]
	[[ $stderr == *"vi: warning: cannot load plugin '$dir/hv-failinit.so': initialisation failed: fixture refuses to initialise"* ]]
	[ "$(grep -c . <<<"$stderr")" -eq 5 ]
}

@test "the other plugins still load, each with its probe answer" {
	run -0 --separate-stderr vi hv list
	[[ ${lines[0]} == "NAME"*"PROBE"*"PATH"*"REASON" ]]
	[[ $output == *"fixture  ok "*"hv-fixture.so"*"fixture backend for tests"* ]]
	[[ $output == *"older    declined "*"hv-older.so"*"older ops table"* ]]
}

@test "a plugin with an older, shorter ops table loads with its missing methods unsupported" {
	run -0 --separate-stderr vi caps --json
	[ "$(jq -r '.backends[] | select(.name == "older") | .capabilities | length' <<<"$output")" = 0 ]
}

@test "vi --json caps is one JSON document with the schema version" {
	run -0 --separate-stderr vi --json caps
	[ "$(jq -r .vi <<<"$output")" = 1 ]
	[ "$(jq -r '[.backends[].name] | sort | join(",")' <<<"$output")" = "bare,fixture,older" ]
	[ "$(jq -r '.backends[] | select(.name == "fixture") | .probe' <<<"$output")" = ok ]
	[ "$(jq -r '.backends[] | select(.name == "fixture") | .capabilities | join(",")' <<<"$output")" = "direct-boot,firmware-boot,lifecycle,pause,save-restore,live-clone" ]
	[ "$(jq -r '.backends[] | select(.name == "bare") | .capabilities | join(",")' <<<"$output")" = "direct-boot" ]
}

@test "vi hv list --json lists load errors and the search path" {
	run -0 --separate-stderr vi hv list --json
	[ "$(jq -r '.load_errors | length' <<<"$output")" = 5 ]
	[ "$(jq -r '.search_path[0]' <<<"$output")" = "$VI_PLUGIN_DIR" ]
}

@test "caps --hv names one backend; an unknown one is not found" {
	run -0 --separate-stderr vi caps --hv fixture
	[ "${#lines[@]}" -eq 2 ]
	run -3 --separate-stderr vi caps --hv fixtur
	[ "$output" = "" ]
	[[ $stderr == *"vi: error: no backend named 'fixtur'; did you mean 'fixture'?" ]]
}

@test "--connect means nothing to a backend that runs VMs on this host only" {
	run -2 --separate-stderr vi caps --hv fixture --connect test:///elsewhere
	[ "${stderr_lines[-1]}" = "vi: error: backend 'fixture' runs VMs on this host only: --connect 'test:///elsewhere' means nothing to it" ]
	run -0 --separate-stderr vi caps --json --connect test:///elsewhere
	[ "$(jq -r '.backends[] | select(.name == "fixture") | .probe + ": " + .reason' <<<"$output")" = "declined: runs VMs on this host only: a connection means nothing to it" ]
}

@test "with no plugins at all, caps honestly lists none" {
	export VI_PLUGIN_DIR=$BATS_TEST_TMPDIR/empty
	mkdir -p "$VI_PLUGIN_DIR"
	run -0 vi caps
	[ "$output" = "no backends installed (see 'vi hv list')" ]
	run -0 vi --json caps
	[ "$(jq -r '.backends | length' <<<"$output")" = 0 ]
}

@test "a verb loads only the backends it uses: none for an empty list, the VM's own for its verbs" {
	run -0 --separate-stderr vi -v list
	[ "$output" = "" ]
	[[ $stderr != *"loaded plugin"* && $stderr != *"cannot load"* ]]
	run -0 --separate-stderr vi caps --hv fixture
	[[ $stderr != *"cannot load"* ]]
	touch "$BATS_TEST_TMPDIR/vmlinuz"
	run -0 vi -q create --hv fixture --kernel "$BATS_TEST_TMPDIR/vmlinuz" one
	run -0 --separate-stderr vi -v show one
	[ "$(grep -c "loaded plugin" <<<"$stderr")" = 1 ]
	[[ $stderr == *"loaded plugin 'fixture'"* && $stderr != *"cannot load"* ]]
}

@test "a backend whose plugin cannot load is not installed, for the VMs that use it" {
	touch "$BATS_TEST_TMPDIR/vmlinuz"
	run -0 vi -q create --hv fixture --kernel "$BATS_TEST_TMPDIR/vmlinuz" one
	mkdir -p "$BATS_TEST_TMPDIR/broken"
	ln -s "$VI_BUILD/tests/plugins/hv-failinit.so" "$BATS_TEST_TMPDIR/broken/hv-fixture.so"
	VI_PLUGIN_DIR=$BATS_TEST_TMPDIR/broken run -0 --separate-stderr vi list
	[[ $output == *"one"*"fixture"*"unknown"* ]]
	[[ $stderr == *"cannot load plugin '$BATS_TEST_TMPDIR/broken/hv-fixture.so'"* ]]
	[[ $stderr == *"state unknown: backend 'fixture' is not installed"* ]]
	VI_PLUGIN_DIR=$BATS_TEST_TMPDIR/broken:$VI_BUILD/tests/plugins run -0 --separate-stderr vi list
	[[ $output == *"one"*"fixture"*"stopped"* ]]
}
