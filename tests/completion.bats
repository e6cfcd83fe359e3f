#!/usr/bin/env bats
# Shell completion: the bash and zsh scripts offer what the C tables hold.

load lib/common

setup() {
	common_setup
	source "$VI_TOP/completion/vi.bash"
}

# Completes the words given (the last one is being typed) through the bash
# script, as bash itself would call it.
complete_bash() {
	COMP_WORDS=(vi "$@")
	COMP_CWORD=$#
	COMPREPLY=()
	_vi_vm
	printf '%s\n' "${COMPREPLY[@]}"
}

@test "every verb in the table is offered by bash completion" {
	run -0 complete_bash ""
	local offered=$output
	for v in caps help hv list show version; do
		grep -qx "$v" <<<"$offered" || { echo "'$v' not offered"; return 1; }
	done
	[[ $offered != *__complete* ]]
}

@test "every verb on the --help list is completed" {
	local listed
	listed=$(vi --help | sed -n '/^Verbs:/,/^$/{s/^  \([a-z-]*\) .*/\1/p}')
	[ -n "$listed" ]
	for v in $listed; do
		run -0 complete_bash "$v"
		grep -qx "$v" <<<"$output" || { echo "'$v' not completed"; return 1; }
	done
}

@test "a prefix narrows the verbs" {
	run -0 complete_bash "h"
	[ "$output" = "$(printf 'help\nhost\nhv')" ]
}

@test "options of the verb come first, then the global ones, without repeats" {
	run -0 complete_bash show "--"
	[ "${lines[0]}" = "--json" ]
	[ "${lines[1]}" = "--connect" ]
	[ "$(printf '%s\n' "${lines[@]}" | sort | uniq -d)" = "" ]
	[[ $output == *--home* ]]
}

@test "subcommands are completed" {
	run -0 complete_bash hv ""
	[ "$output" = "list" ]
}

@test "VM names are completed where a verb takes one" {
	define_vm web1
	define_vm db1
	run -0 complete_bash show ""
	[ "$(sort <<<"$output")" = "$(printf 'db1\nweb1')" ]
	run -0 complete_bash --home "$VI_HOME" show w
	[ "$output" = "web1" ]
}

@test "snapshot names are completed after their VM, and as VM@SNAPSHOT" {
	define_vm web1
	mkdir -p "$VI_HOME/vms/web1/snapshots/good" "$VI_HOME/vms/web1/snapshots/gold" \
		"$VI_HOME/vms/web1/snapshots/.good.123"
	run -0 complete_bash snapshot checkout web1 ""
	[ "$(sort <<<"$output")" = "$(printf 'gold\ngood')" ]
	run -0 complete_bash snapshot delete web1 goo
	[ "$output" = good ]
	run -0 vi __complete clone web1@go
	[ "$(sort <<<"$output")" = "$(printf 'web1@gold\nweb1@good')" ]
	run -0 complete_bash snapshot list ""
	[ "$output" = web1 ]
}

@test "policy names are completed where a policy is named" {
	printf 'name: web-cpu\nvms: [a]\nwhen: cpus > 1\nthen: restart\n---\nname: revive\nvms: [a]\nwhen: state == crashed\nthen: restart\n' |
		vi -q policy add -
	run -0 complete_bash policy show ""
	[ "$(sort <<<"$output")" = "$(printf 'revive\nweb-cpu')" ]
	run -0 complete_bash policy rm w
	[ "$output" = web-cpu ]
	run -0 complete_bash policy log --policy r
	[ "$output" = revive ]
}

@test "backend names are completed after --hv" {
	use_fixture_plugins
	run -0 complete_bash caps --hv ""
	[ "$(sort <<<"$output")" = "$(printf 'bare\nfixture\nolder')" ]
}

@test "the zsh script parses and completes verbs" {
	zsh -n "$VI_TOP/completion/_vi"
	run -0 zsh -fc "
		compadd() { shift \$((\$# - 1)); print -l -- \${(P)1}; }
		words=(vi h); CURRENT=2
		source $VI_TOP/completion/_vi"
	[ "$output" = "$(printf 'help\nhost\nhv')" ]
}

@test "another vi first in PATH, such as the editor, is never run by completion" {
	mkdir -p "$BATS_TEST_TMPDIR/editor"
	printf '#!/bin/sh\necho "$*" >>"%s/ran"\n' "$BATS_TEST_TMPDIR" >"$BATS_TEST_TMPDIR/editor/vi"
	chmod +x "$BATS_TEST_TMPDIR/editor/vi"
	PATH=$BATS_TEST_TMPDIR/editor:$PATH run -0 complete_bash ""
	[ "$output" = "" ]
	run -1 env PATH="$BATS_TEST_TMPDIR/editor:$PATH" zsh -fc "
		compadd() { shift \$((\$# - 1)); print -l -- \${(P)1}; }
		words=(vi h); CURRENT=2
		source $VI_TOP/completion/_vi"
	[ "$output" = "" ]
	[ ! -e "$BATS_TEST_TMPDIR/ran" ]
	# This vi, found again, completes as before.
	run -0 complete_bash "h"
	[ "$output" = "$(printf 'help\nhost\nhv')" ]
}
