#!/usr/bin/env bats
# The command line contract: dispatch, usage errors, exit codes, output checks.

load lib/common

setup() { common_setup; }

# A test that reaches the system's libvirt leaves nothing there, pass or fail.
teardown() {
	[ -z "${libvirt_name:-}" ] || virsh -q -c qemu:///system undefine "$libvirt_name" >/dev/null 2>&1 || true
}

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

# A stand-in editor in its own directory: it records how it was called.
fake_editor() { # NAME
	mkdir -p "$BATS_TEST_TMPDIR/editors"
	printf '#!/bin/sh\necho "$0 $*" >"%s/edited"\nexit 7\n' "$BATS_TEST_TMPDIR" \
		>"$BATS_TEST_TMPDIR/editors/$1"
	chmod +x "$BATS_TEST_TMPDIR/editors/$1"
}

@test "vi FILE opens the system editor on it, with its exit status" {
	fake_editor ed1
	cd "$BATS_TEST_TMPDIR"
	echo text >notes.txt
	EDITOR="$BATS_TEST_TMPDIR/editors/ed1 -n" run -7 vi notes.txt
	[ "$(cat edited)" = "$BATS_TEST_TMPDIR/editors/ed1 -n notes.txt" ]
	# A new file, a path, a directory: the editor too.
	EDITOR=$BATS_TEST_TMPDIR/editors/ed1 run -7 vi new.conf +3
	[ "$(cat edited)" = "$BATS_TEST_TMPDIR/editors/ed1 new.conf +3" ]
	EDITOR=$BATS_TEST_TMPDIR/editors/ed1 run -7 vi sub/new
	[ "$(cat edited)" = "$BATS_TEST_TMPDIR/editors/ed1 sub/new" ]
}

@test "vi FILE never finds itself as the editor: EDITOR=vi means the next vi on PATH" {
	fake_editor vi
	cd "$BATS_TEST_TMPDIR"
	PATH=$VI_BUILD:$BATS_TEST_TMPDIR/editors EDITOR=vi run -7 vi notes.txt
	[ "$(cat edited)" = "$BATS_TEST_TMPDIR/editors/vi notes.txt" ]
	# No editor but this vi: say so.
	PATH=$VI_BUILD run -3 vi notes.txt
	[ "$output" = "vi: error: 'notes.txt' is not a verb, and there is no editor but this vi to open it: set EDITOR" ]
}

@test "a mistyped verb is not a file to edit" {
	fake_editor ed1
	export EDITOR=$BATS_TEST_TMPDIR/editors/ed1
	run -2 vi lsit
	[ "$output" = "vi: error: unknown verb 'lsit'; did you mean 'list'?" ]
	run -2 --separate-stderr vi --json notes.txt
	[ "$(jq -r .error.message <<<"$output")" = "unknown verb 'notes.txt' (see 'vi --help')" ]
	[ ! -e "$BATS_TEST_TMPDIR/edited" ]
}

@test "an empty VI_HOME is refused like an empty --home, exit 2" {
	VI_HOME= run -2 vi list
	[ "$output" = "vi: error: VI_HOME is empty: name the store directory, or unset it for the default" ]
	run -2 vi --home "" list
	[ "$output" = "vi: error: --home is empty: name the store directory" ]
}

@test "with --json an error is a document on stdout and a line on stderr" {
	run -3 --separate-stderr vi --json show nosuch
	[ "$stderr" = "vi: error: no VM named 'nosuch'" ]
	[ "$(jq -c . <<<"$output")" = '{"vi":1,"error":{"code":3,"message":"no VM named '"'nosuch'"'"}}' ]
	run -2 --separate-stderr vi list --json --jsno
	[ "$(jq -c .error <<<"$output")" = '{"code":2,"message":"unknown option '"'--jsno'"'; did you mean '"'--json'"'?"}' ]
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

# Runs vi as user nobody, with a store of its own.
as_nobody() {
	setpriv --reuid=65534 --regid=65534 --clear-groups env VI_HOME="$BATS_TEST_TMPDIR/nobody" "$@"
}

@test "a user kept from /dev/kvm is told so, with the fix, not that the backend is missing" {
	[ "$(id -u)" = 0 ] && [ -c /dev/kvm ] || skip "needs root and /dev/kvm"
	! as_nobody test -r /dev/kvm -a -w /dev/kvm || skip "/dev/kvm is open to everybody"
	local hv=svm
	grep -q GenuineIntel /proc/cpuinfo && hv=vtx
	[ -e "$VI_BUILD/plugins/hv-$hv.so" ] || skip "no hv-$hv plugin"
	# Bats keeps its files in a private directory: let nobody through to its own.
	load lib/template
	traversable "$BATS_TEST_TMPDIR"
	install -d -o 65534 -g 65534 "$BATS_TEST_TMPDIR/nobody"
	local why="'/dev/kvm' is not open to user 'nobody' (mode $(stat -c %04a /dev/kvm), group '$(stat -c %G /dev/kvm)'): add the user to group '$(stat -c %G /dev/kvm)' and log in again"
	echo kernel >"$BATS_TEST_TMPDIR/vmlinuz"
	run -4 as_nobody vi create --hv $hv --kernel "$BATS_TEST_TMPDIR/vmlinuz" web1
	[ "$output" = "vi: error: backend '$hv' is not usable here: $why" ]
	# Without --hv, each candidate's reason is given.
	run -4 as_nobody vi create --kernel "$BATS_TEST_TMPDIR/vmlinuz" web1
	[[ $output == "vi: error: no usable backend here ("*"$hv: $why"*"; see 'vi caps')" ]]
	VI_HOME=$BATS_TEST_TMPDIR/nobody define_vm web1
	sed -i "s/^hv: fixture/hv: $hv/" "$BATS_TEST_TMPDIR/nobody/vms/web1/vm.yaml"
	chown -R 65534:65534 "$BATS_TEST_TMPDIR/nobody"
	run -0 --separate-stderr as_nobody vi show web1
	[[ $output == *"state:       unknown (backend '$hv' is not usable: $why)"* ]]
}

@test "--connect to an unreachable libvirt: create gives libvirt's reason, list warns" {
	[ -e "$VI_BUILD/plugins/hv-qemu.so" ] || skip "no hv-qemu plugin"
	local uri='qemu+unix:///system?socket=/nonexistent'
	local why="no QEMU host: cannot connect to '$uri': failed to connect socket to '/nonexistent': No such file or directory"
	echo kernel >"$BATS_TEST_TMPDIR/vmlinuz"
	run -1 vi create --connect "$uri" --kernel "$BATS_TEST_TMPDIR/vmlinuz" web1
	[ "$output" = "vi: error: backend 'qemu' at '$uri': $why" ]
	[ -z "$(ls "$VI_HOME/vms")" ]
	define_vm web1 "connect: $uri"
	sed -i "s/^hv: fixture/hv: qemu/" "$VI_HOME/vms/web1/vm.yaml"
	run -0 --separate-stderr vi list
	[[ ${lines[1]} =~ ^web1\ +qemu\ +unknown ]]
	[ "$stderr" = "vi: warning: state unknown: backend 'qemu' is not usable at '$uri': $why" ]
	run -2 vi create --hv svm --connect "$uri" --kernel "$BATS_TEST_TMPDIR/vmlinuz" web2
	[ "$output" = "vi: error: backend 'svm' runs VMs on this host only: --connect '$uri' means nothing to it" ]
	run -2 vi caps --hv svm --connect "$uri"
	[ "$output" = "vi: error: backend 'svm' runs VMs on this host only: --connect '$uri' means nothing to it" ]
}

@test "a store QEMU cannot reach is refused at create, naming the directory and the fix" {
	[ "$(id -u)" = 0 ] || skip "needs root"
	[ -e "$VI_BUILD/plugins/hv-qemu.so" ] || skip "no hv-qemu plugin"
	[ "$(vi caps --json --hv qemu | jq -r '.backends[0].probe')" = ok ] || skip "no libvirt here"
	load lib/template
	local closed=$BATS_TEST_TMPDIR/closed user
	libvirt_name=vi-test-$$-closed
	traversable "$BATS_TEST_TMPDIR"
	mkdir -m 0700 "$closed"
	qemu-img create -q -f qcow2 "$BATS_TEST_TMPDIR/disk.qcow2" 1M
	user=$(virsh -c qemu:///system capabilities | sed -n "s/.*<baselabel type='qemu'>+\([0-9]*\):.*/\1/p")
	user=$(id -nu "$user")
	run -1 vi --home "$closed/home" create --hv qemu --disk "$BATS_TEST_TMPDIR/disk.qcow2" "$libvirt_name"
	[ "$output" = "vi: error: QEMU runs as '$user', which cannot search '$closed' (mode 0700) to reach VM '$libvirt_name': run 'chmod o+x $closed' or 'setfacl -m u:$user:x $closed', or keep VMs elsewhere" ]
	[ -z "$(ls "$closed/home/vms")" ]
	run virsh -c qemu:///system dominfo "$libvirt_name"
	[ "$status" -ne 0 ]
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
