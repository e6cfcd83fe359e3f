#!/usr/bin/env bats
# Every verb has a manual page whose SYNOPSIS is exactly its `-h` usage, and
# every page passes mandoc's lint.

load lib/common

setup() { common_setup; }

verbs() { vi __complete ""; }

# The SYNOPSIS lines of a page, as plain text, one per line.
synopsis() {
	mandoc -Tascii -O width=400 "$1" | sed 's/.\x08//g' |
		sed -n '/^SYNOPSIS/,/^[A-Z]/{/^ /p}' | sed 's/^ *//'
}

@test "the verb list is not empty" {
	run -0 verbs
	[ "${#lines[@]}" -ge 6 ]
}

@test "every verb has a manual page" {
	for v in $(verbs); do
		[ -f "$VI_TOP/man/vi-$v.1" ] || { echo "no man/vi-$v.1"; return 1; }
	done
}

@test "every page's SYNOPSIS matches 'vi VERB -h'" {
	for v in $(verbs); do
		want=$(vi "$v" -h | sed -n 's/^usage: //p; s/^   or: //p')
		[ -n "$want" ] || { echo "vi $v -h printed no usage"; return 1; }
		got=$(synopsis "$VI_TOP/man/vi-$v.1")
		if [ "$got" != "$want" ]; then
			printf 'vi-%s.1 SYNOPSIS:\n%s\n-h says:\n%s\n' "$v" "$got" "$want"
			return 1
		fi
	done
}

@test "vi(1) names every verb and every exit code" {
	local page
	page=$(mandoc -Tascii -O width=400 "$VI_TOP/man/vi.1" | sed 's/.\x08//g')
	for v in $(verbs); do
		grep -q "vi-$v(1)" <<<"$page" || { echo "vi.1 does not refer to vi-$v(1)"; return 1; }
	done
	for code in 0 1 2 3 4 5 6; do
		grep -Eq "^       $code  +[A-Z]" <<<"$page" || { echo "vi.1 lacks exit code $code"; return 1; }
	done
}

@test "mandoc -Tlint passes on every page" {
	run mandoc -Tlint "$VI_TOP"/man/*.[15]
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$output" = "" ]
}

@test "vi help VERB shows that verb's page" {
	run -0 vi help list
	[[ $output == *"vi-list - list virtual machines and their state"* ]]
}

@test "vi help shows vi(1)" {
	run -0 vi help
	[[ $output == *"vi - build, provision and run virtual machines"* ]]
}

@test "vi help of an unknown verb suggests one, exit 3" {
	run -3 vi help lst
	[ "$output" = "vi: error: no verb 'lst'; did you mean 'list'?" ]
}
