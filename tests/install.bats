#!/usr/bin/env bats
# make install puts every part where the system looks for it.

load lib/common

setup() { common_setup; }

@test "make install DESTDIR=... PREFIX=/usr installs binary, plugins, pages, completion" {
	local d=$BATS_TEST_TMPDIR/root
	run -0 make -s -C "$VI_TOP" B="$VI_BUILD" install DESTDIR="$d" PREFIX=/usr
	[ -x "$d/usr/bin/vi" ]
	[ -d "$d/usr/lib/vi/plugins" ]
	[ -f "$d/usr/share/man/man1/vi.1" ]
	[ -f "$d/usr/share/man/man1/vi-list.1" ]
	[ -f "$d/usr/share/bash-completion/completions/vi" ]
	[ -f "$d/usr/share/zsh/vendor-completions/_vi" ]
	# The policy engine's unit runs the installed vi.
	grep -qx "ExecStart=/usr/bin/vi policy run" "$d/usr/lib/systemd/system/vi-policy.service"
	for p in "$VI_BUILD"/plugins/hv-*.so; do
		[ -e "$p" ] || continue
		[ -f "$d/usr/lib/vi/plugins/${p##*/}" ] || { echo "missing ${p##*/}"; return 1; }
	done
	run -0 "$d/usr/bin/vi" version
	[[ $output == "vi "* ]]
	# The image tools module is loaded from beside the installed binary.
	[ -f "$d/usr/lib/vi/vi-tools.so" ]
	echo "not an archive" >"$BATS_TEST_TMPDIR/junk.tar"
	VI_HOME=$BATS_TEST_TMPDIR/home run -1 "$d/usr/bin/vi" template import "$BATS_TEST_TMPDIR/junk.tar"
	[[ $output == "vi: error: "* ]]
	[[ $output != *"image tools module"* ]]
}

@test "a staged install finds its own plugins, templates and manual pages" {
	local d=$BATS_TEST_TMPDIR/root
	run -0 make -s -C "$VI_TOP" B="$VI_BUILD" install DESTDIR="$d" PREFIX=/usr
	[ -e "$d/usr/lib/vi/plugins/hv-qemu.so" ] || skip "no plugins built"
	run -0 "$d/usr/bin/vi" hv list --json
	[ "$(jq -r '.backends | length' <<<"$output")" -gt 0 ]
	[ "$(jq -r '[.backends[].path | startswith("'"$d"'/usr/lib/vi/plugins/")] | all' <<<"$output")" = true ]
	run -0 "$d/usr/bin/vi" template show --json tiny
	[ "$(jq -r .path <<<"$output")" = "$d/usr/share/vi/templates/tiny.yaml" ]
	run -0 "$d/usr/bin/vi" help list
	[[ $output == *"list virtual machines and their state"* ]]
}
