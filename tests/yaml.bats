#!/usr/bin/env bats
# Hostile YAML: every file vi reads is held to the limits of vi-template(5)
# and fails where it breaks them, with the file, line and column.

load lib/common

setup() {
	common_setup
	template_path_setup
	T=$VI_TEMPLATE_PATH
}

# Writes a template: tpl NAME [yaml lines...] after a valid head of 3 lines.
tpl() {
	local name=$1
	shift
	printf '%s\n' "name: $name" "kernel: vmlinuz" "disks: [{size: 8M, source: busybox}]" \
		"$@" >"$T/$name.yaml"
}

# N times the text: repeat N TEXT
repeat() {
	awk -v n="$1" -v s="$2" 'BEGIN { for (i = 0; i < n; i++) printf "%s", s }'
}

@test "a file larger than 4 MiB is refused" {
	tpl big "description: $(repeat 4194304 x)"
	run -2 vi template validate big
	[ "$output" = "vi: error: cannot read '$T/big.yaml': larger than 4M" ]
}

@test "only regular files are read: not a device, not a FIFO" {
	ln -s /dev/zero "$T/zero.yaml"
	run -2 timeout 10 vi template validate zero
	[ "$output" = "vi: error: cannot read '$T/zero.yaml': not a regular file" ]
	mkfifo "$T/fifo.yaml"
	run -2 timeout 10 vi template validate fifo
	[ "$output" = "vi: error: cannot read '$T/fifo.yaml': not a regular file" ]
}

@test "aliases may repeat at most 4 MiB: a 1 MiB anchor used 500 times" {
	tpl many "description: &a $(repeat 1048576 x)" "run: [$(repeat 499 '*a, ')*a]"
	run -2 vi template validate many
	[ "$output" = "vi: error: $T/many.yaml:5:19: aliases repeat more than 4M of text" ]
}

@test "aliases of aliases count what they expand to" {
	local lines=("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]") i
	for i in 1 2 3 4 5 6 7 8 9; do
		lines+=("l$i: &l$i [$(repeat 9 "*l$((i - 1)), ")*l$((i - 1))]")
	done
	tpl laughs "${lines[@]}"
	run -2 vi template validate laughs
	[ "$output" = "vi: error: $T/laughs.yaml:9:55: aliases repeat more than 4M of text" ]
}

@test "an alias inside what it names, or naming nothing, is an error" {
	tpl loop "run: &a [x, *a]"
	run -2 vi template validate loop
	[ "$output" = "vi: error: $T/loop.yaml:4:13: alias '*a' stands inside what it names" ]
	tpl unknown "run: [*b]"
	run -2 vi template validate unknown
	[ "$output" = "vi: error: $T/unknown.yaml:4:7: unknown alias '*b'" ]
	tpl twice "description: &a x" "version: &a y"
	run -2 vi template validate twice
	[ "$output" = "vi: error: $T/twice.yaml:5:10: anchor '&a' is defined twice" ]
}

@test "mappings and lists nest at most 64 deep: 100,000 nested mappings" {
	tpl deep "description: $(repeat 100000 '{a: ')b$(repeat 100000 '}')"
	run -2 timeout 10 vi template validate deep
	[ "$output" = "vi: error: $T/deep.yaml:4:266: more than 64 levels of nesting" ]
	tpl deep "description: $(repeat 100000 '[')$(repeat 100000 ']')"
	run -2 timeout 10 vi template validate deep
	[ "$output" = "vi: error: $T/deep.yaml:4:77: more than 64 levels of nesting" ]
}

@test "100,000 parameters are read, and one given twice is found at its line" {
	tpl params "parameters:" "$(awk 'BEGIN { for (i = 0; i < 100000; i++) print "  p" i ": v" }')" \
		"  p0: w"
	run -2 timeout 10 vi template validate params
	[ "$output" = "vi: error: $T/params.yaml:100005:3: key 'p0' is given twice (first at line 5)" ]
}

@test "references to a long parameter may add at most 4 MiB" {
	tpl refs "parameters: {p: $(repeat 1048576 x)}" "run: [\"\${p}\", \"\${p}\${p}\${p}\${p}\"]"
	run -2 vi template validate refs
	[ "$output" = "vi: error: $T/refs.yaml:5:15: parameters add more than 4M of text" ]
}

@test "a key given twice is an error at the second, an alias included" {
	tpl mem "memory: 1G" "memory: 2G"
	run -2 vi template validate mem
	[ "$output" = "vi: error: $T/mem.yaml:5:1: key 'memory' is given twice (first at line 4)" ]
	printf '%s\n' "name: one" "kernel: vmlinuz" "name: two" >"$T/one.yaml"
	run -2 vi template validate one
	[ "$output" = "vi: error: $T/one.yaml:3:1: key 'name' is given twice (first at line 1)" ]
	tpl alias "&k memory: 1G" "*k : 2G"
	run -2 vi template validate alias
	[ "$output" = "vi: error: $T/alias.yaml:5:1: key 'memory' is given twice (first at line 4)" ]
	tpl inner "disks: [{size: 8M, source: busybox, size: 16M}]"
	sed -i 3d "$T/inner.yaml"
	run -2 vi template validate inner
	[ "$output" = "vi: error: $T/inner.yaml:3:37: key 'size' is given twice (first at line 3)" ]
}

@test "a second YAML document is an error at its start" {
	tpl two "---" "name: other"
	run -2 vi template validate two
	[ "$output" = "vi: error: $T/two.yaml:4:1: a second YAML document is not allowed" ]
}

@test "a VM definition is held to the same rules" {
	use_fixture_plugins
	define_vm web1 "memory: 1G"
	run -2 vi show web1
	[ "$output" = "vi: error: $VI_HOME/vms/web1/vm.yaml:7:1: key 'memory' is given twice (first at line 6)" ]
	define_vm web2 "---" "name: web2"
	run -2 vi show web2
	[ "$output" = "vi: error: $VI_HOME/vms/web2/vm.yaml:7:1: a second YAML document is not allowed" ]
}

@test "memory beyond 64T is out of range, in templates and VM definitions" {
	tpl huge "memory: 1E"
	run -2 vi template validate huge
	[ "$output" = "vi: error: $T/huge.yaml:4:9: invalid memory '1E': must be from 16M to 64T" ]
	tpl huge "max_memory: 65T"
	run -2 vi template validate huge
	[ "$output" = "vi: error: $T/huge.yaml:4:13: invalid max_memory '65T': must be from 16M to 64T" ]
	tpl disk
	sed -i 's/size: 8M/size: 1E/' "$T/disk.yaml"
	run -2 vi template validate disk
	[ "$output" = "vi: error: $T/disk.yaml:3:16: invalid size '1E': must be from 1M to 64T" ]
	use_fixture_plugins
	define_vm web1
	sed -i 's/^memory: 512M/memory: 1E/' "$VI_HOME/vms/web1/vm.yaml"
	run -2 vi show web1
	[ "$output" = "vi: error: $VI_HOME/vms/web1/vm.yaml:6:9: invalid memory '1E': must be from 1 to 64T" ]
}

@test "--memory beyond 64T is refused" {
	use_fixture_plugins
	run -2 vi create --hv fixture --memory 1E web1
	[ "$output" = "vi: error: --memory must be at most 64T" ]
	run -2 vi create --hv fixture --memory 1G --max-memory 65T web1
	[ "$output" = "vi: error: --max-memory must be at most 64T" ]
	run -0 vi list
	[ "$output" = "" ]
}

@test "a control character or bad UTF-8 is an error at its line and column" {
	tpl esc "description: a$(printf '\033')b"
	run -2 vi template validate esc
	[ "$output" = "vi: error: $T/esc.yaml:4:15: control characters are not allowed" ]
	tpl utf "description: $(printf '\303\251\377')"
	run -2 vi template validate utf
	[ "$output" = "vi: error: $T/utf.yaml:4:15: invalid leading UTF-8 octet" ]
}
