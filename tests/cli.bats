#!/usr/bin/env bats
# The command line contract: dispatch, usage errors, exit codes, output checks.

load lib/common

setup() { common_setup; }

@test "no verb prints usage on stderr and exits 2" {
	run -2 vi
	[[ $output == usage:* ]]
}

@test "--help lists the verbs and exits 0" {
	run -0 vi --help
	[[ $output == *"  list "* ]]
	[[ $output == *"  caps "* ]]
	[[ $output != *"__complete"* ]]
}

@test "--version and version agree" {
	run -0 vi --version
	[[ $output =~ ^vi\ [0-9]+\.[0-9]+\.[0-9]+\ \(plugin\ ABI\ 2\)$ ]]
	local v=$output
	run -0 vi version
	[ "$output" = "$v" ]
}

@test "version --json carries the schema version" {
	run -0 vi version --json
	[ "$(jq -r .vi <<<"$output")" = 1 ]
	[ "$(jq -r .plugin_abi <<<"$output")" = 2 ]
}

@test "an unknown verb close to a real one gets a suggestion, exit 2" {
	run -2 vi lsit
	[ "$output" = "vi: error: unknown verb 'lsit'; did you mean 'list'?" ]
}

@test "an unknown verb far from any gets no suggestion, exit 2" {
	run -2 vi frobnicate
	[ "$output" = "vi: error: unknown verb 'frobnicate' (see 'vi --help')" ]
}

@test "vi FILE explains what this vi is and names the editor" {
	echo text >"$BATS_TEST_TMPDIR/notes.txt"
	EDITOR=/usr/bin/nano run -2 vi "$BATS_TEST_TMPDIR/notes.txt"
	[ "$output" = "vi: error: '$BATS_TEST_TMPDIR/notes.txt' is a file: this vi manages virtual machines; the system editor is /usr/bin/nano" ]
}

@test "vi FILE without EDITOR names an installed editor that is not vi itself" {
	echo text >"$BATS_TEST_TMPDIR/notes.txt"
	run -2 vi "$BATS_TEST_TMPDIR/notes.txt"
	[[ $output == "vi: error: '$BATS_TEST_TMPDIR/notes.txt' is a file: this vi manages virtual machines"* ]]
	[[ $output != *"$VI_BUILD/vi"* ]]
}

@test "an unknown option gets a suggestion, exit 2" {
	run -2 vi list --jsno
	[ "$output" = "vi: error: unknown option '--jsno'; did you mean '--json'?" ]
}

@test "a missing argument is a usage error" {
	run -2 vi show
	[ "$output" = "vi: error: missing arguments: expected NAME (see 'vi show -h')" ]
}

@test "an extra argument is a usage error" {
	run -2 vi list extra
	[ "$output" = "vi: error: unexpected argument 'extra'" ]
}

@test "an option missing its value is a usage error" {
	run -2 vi caps --hv
	[ "$output" = "vi: error: option --hv needs a value (NAME)" ]
}

@test "a group verb without its subcommand shows the subcommands, exit 2" {
	run -2 vi hv
	[ "$output" = "usage: vi hv list [--json] [--connect URI]" ]
}

@test "an unknown subcommand gets a suggestion" {
	run -2 vi hv lst
	[ "$output" = "vi: error: unknown subcommand 'hv lst'; did you mean 'list'?" ]
}

@test "VERB -h prints the verb's usage on stdout, exit 0" {
	run -0 vi show -h
	[ "${lines[0]}" = "usage: vi show [--json] [--connect URI] NAME" ]
}

@test "global options work before and after the verb" {
	run -0 vi --json version
	[ "$(jq -r .vi <<<"$output")" = 1 ]
	run -0 vi version --json
	[ "$(jq -r .vi <<<"$output")" = 1 ]
	run -0 vi --home "$BATS_TEST_TMPDIR/other" list
	[ -d "$BATS_TEST_TMPDIR/other/vms" ]
}

@test "a failed write to stdout is an error, exit 1" {
	run -1 bash -c 'vi version >/dev/full'
	[ "$output" = "vi: error: cannot write to standard output: No space left on device" ]
}

@test "-q still prints errors" {
	run -3 vi -q show nosuch
	[ "$output" = "vi: error: no VM named 'nosuch'" ]
}

@test "-v shows debugging lines on stderr, stdout unchanged" {
	use_fixture_plugins
	run -0 --separate-stderr vi -v caps --hv fixture
	[[ $stderr == *"vi: debug: loaded plugin 'fixture'"* ]]
	[[ $stderr == *"vi: debug: probe of 'fixture': ok, fixture backend for tests"* ]]
	[[ $output != *debug* ]]
}

@test "control characters in names, errors and listings are printed escaped" {
	use_fixture_plugins
	run -2 vi show $'x\e]0;PWNED\a'
	[ "$output" = "vi: error: invalid VM name 'x\\x1b]0;PWNED\\x07': only letters, digits, '.', '_' and '-' are allowed" ]
	define_vm web1 'template: "t\e]0;PWNED\a"' 'hostname: "h\u009b1m"'
	run -0 vi show web1
	[[ $output == *$'\nhostname:    h\\xc2\\x9b1m\ntemplate:    t\\x1b]0;PWNED\\x07'* ]]
	run -0 vi list
	[ "${lines[1]}" = 'web1  fixture  stopped  2     512M    t\x1b]0;PWNED\x07' ]
	define_vm bad $'"k\\t\\r": 1'
	run -0 --separate-stderr vi list
	[ "$stderr" = "vi: warning: $VI_HOME/vms/bad/vm.yaml:7:1: unknown key 'k\\x09\\x0d'" ]
}
