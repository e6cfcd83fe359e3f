#!/usr/bin/env bats
# VM labels: set by vi create --label and vi label, kept by clones, shown by
# vi show and selected by vi list --label; bad ones change nothing.

load lib/common
load lib/native

setup() {
	native_setup
	kernel=$guest/stamps.bzImage
}

new_vm() { # NAME [create options...]
	local name=$1
	shift
	vi -q create --hv "$hv" --kernel "$kernel" --memory 64M --nic none "$@" "$name"
}

@test "vi create --label records sorted labels; a key given twice keeps the last" {
	new_vm web1 --label tier=web --label env=prod --label note= --label env=dev
	run -0 vi show --json web1
	[ "$(jq -c .vm.labels <<<"$output")" = '{"env":"dev","note":"","tier":"web"}' ]
	run -0 vi show web1
	[[ $output == *$'\nlabels:      env=dev\n             note=\n             tier=web\n'* ]]
	grep -qx "labels:" "$VI_HOME/vms/web1/vm.yaml"
	grep -qx "  env: dev" "$VI_HOME/vms/web1/vm.yaml"
}

@test "a VM without labels shows an empty object, and an old vm.yaml still loads" {
	new_vm plain
	run -0 vi show --json plain
	[ "$(jq -c .vm.labels <<<"$output")" = '{}' ]
	! grep -q labels "$VI_HOME/vms/plain/vm.yaml" || false
	run -0 vi show plain
	[[ $output != *labels:* ]]
}

@test "bad labels: one line naming it, exit 2, and nothing created" {
	run -2 vi create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --label 'bad key=1' b
	[ "$output" = "vi: error: invalid label 'bad key=1': a key is 1-63 of A-Z a-z 0-9 . _ -, beginning with a letter or digit" ]
	run -2 vi create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --label '-k=1' b
	[ "$output" = "vi: error: invalid label '-k=1': a key is 1-63 of A-Z a-z 0-9 . _ -, beginning with a letter or digit" ]
	run -2 vi create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --label "k=a/b" b
	[ "$output" = "vi: error: invalid label 'k=a/b': a value is 0-63 of A-Z a-z 0-9 . _ -" ]
	long=$(printf 'x%.0s' {1..64})
	run -2 vi create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --label "k=$long" b
	[ "$output" = "vi: error: invalid label 'k=$long': a value is 0-63 of A-Z a-z 0-9 . _ -" ]
	run -2 vi create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --label "$long=ok" b
	run -2 vi create --hv "$hv" --kernel "$kernel" --memory 64M --nic none --label tier b
	[ "$output" = "vi: error: invalid label 'tier': expected KEY=VALUE" ]
	run -0 vi list --json
	[ "$(jq -c .vms <<<"$output")" = '[]' ]
	# 63 characters are fine.
	new_vm b --label "${long:1}=${long:1}"
}

@test "vi list --label selects VMs having every label asked for" {
	new_vm a --label tier=web --label env=prod
	new_vm b --label tier=web --label env=dev
	new_vm c
	run -0 vi list --json
	[ "$(jq -c '[.vms[] | .labels]' <<<"$output")" = \
		'[{"env":"prod","tier":"web"},{"env":"dev","tier":"web"},{}]' ]
	run -0 vi list --json --label tier=web
	[ "$(jq -c '[.vms[].name]' <<<"$output")" = '["a","b"]' ]
	run -0 vi list --json -l tier=web --label env=dev
	[ "$(jq -c '[.vms[].name]' <<<"$output")" = '["b"]' ]
	run -0 vi list --label env=staging
	[ "$output" = "" ]
	run -0 vi list --label env=prod
	[ "${lines[0]}" = "NAME  BACKEND  STATE    CPUS  MEMORY  TEMPLATE" ]
	[[ ${lines[1]} == "a "* ]]
	[ "${#lines[@]}" = 2 ]
	run -2 vi list --label env
	[ "$output" = "vi: error: invalid label 'env': expected KEY=VALUE" ]
}

@test "vi label sets and removes, all or nothing" {
	new_vm web1 --label tier=web --label env=prod
	run -0 vi label web1 env- owner=ops tier=db
	[ "$output" = "labelled VM 'web1'" ]
	run -0 vi --json label web1 gone-
	[ "$(jq -c '[.name, .labels]' <<<"$output")" = '["web1",{"owner":"ops","tier":"db"}]' ]
	before=$(sha256sum "$VI_HOME/vms/web1/vm.yaml")
	run -2 vi label web1 a=1 'b c=2'
	[ "$output" = "vi: error: invalid label 'b c=2': a key is 1-63 of A-Z a-z 0-9 . _ -, beginning with a letter or digit" ]
	run -2 vi label web1 owner
	[ "$output" = "vi: error: invalid label 'owner': expected KEY=VALUE or KEY-" ]
	[ "$(sha256sum "$VI_HOME/vms/web1/vm.yaml")" = "$before" ]
	run -3 vi label nope a=1
	[ "$output" = "vi: error: no VM named 'nope'" ]
	run -2 vi label web1
	[ "$output" = "vi: error: missing arguments: expected NAME KEY=VALUE|KEY-... (see 'vi label -h')" ]
}

@test "clones keep their source's labels" {
	new_vm src --label tier=web
	vi -q clone src copy
	run -0 vi show --json copy
	[ "$(jq -c .vm.labels <<<"$output")" = '{"tier":"web"}' ]
	run -0 vi list --json --label tier=web
	[ "$(jq -c '[.vms[].name]' <<<"$output")" = '["copy","src"]' ]
}

@test "a hand-edited vm.yaml with a bad label is refused at its line" {
	new_vm web1
	printf 'labels:\n  "a b": x\n' >>"$VI_HOME/vms/web1/vm.yaml"
	run -2 vi show web1
	[[ $output == "vi: error: $VI_HOME/vms/web1/vm.yaml:"*": invalid label 'a b=x': a key is 1-63 of A-Z a-z 0-9 . _ -, beginning with a letter or digit" ]]
}
