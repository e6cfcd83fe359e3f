#!/usr/bin/env bats
# vi template: the format's checks and messages, the search path, show, list
# and completion. Nothing here builds an image (see template-build.bats).

load lib/common

setup() {
	common_setup
	template_path_setup
}

# Writes a template file: tpl NAME [yaml lines...]; the default body is a
# valid one-disk template.
tpl() {
	local name=$1
	shift
	if [ $# -eq 0 ]; then
		set -- "kernel: vmlinuz" "disks:" "  - size: 64M" "    source: busybox"
	fi
	printf '%s\n' "name: $name" "$@" >"$VI_TEMPLATE_PATH/$name.yaml"
}

@test "the shipped templates are valid" {
	unset VI_TEMPLATE_PATH
	run -0 vi template validate tiny debian-12 debian-12-dev
	[ "${#lines[@]}" -eq 3 ]
	[[ ${lines[0]} =~ ^$VI_TOP/templates/tiny.yaml:\ template\ \'tiny\'\ is\ valid\ \(sha256:[0-9a-f]{12}\)$ ]]
	[[ ${lines[2]} == *"template 'debian-12-dev' is valid"* ]]
}

@test "list shows templates by name, the first on the search path winning" {
	tpl tiny "description: my own tiny" "kernel: vmlinuz" "disks:" "  - size: 8M" "    source: empty"
	tpl web "description: a web server" "kernel: vmlinuz" "disks: [{size: 8M, source: empty}]"
	run -0 vi template list
	[ "${lines[0]}" = "NAME           VERSION  BUILT  DESCRIPTION" ]
	grep -qx "tiny           1        -      my own tiny" <<<"$output"
	grep -qx "web            1        -      a web server" <<<"$output"
	grep -q "^debian-12-dev " <<<"$output"
	run -0 vi template list --json
	[ "$(jq -r '.templates[] | select(.name == "tiny") | .path' <<<"$output")" = "$VI_TEMPLATE_PATH/tiny.yaml" ]
	[ "$(jq -r '.templates[] | select(.name == "web") | .built' <<<"$output")" = false ]
}

@test "templates in \$VI_HOME/templates are found too" {
	unset VI_TEMPLATE_PATH
	mkdir -p "$VI_HOME/templates"
	echo "x" >"$VI_HOME/templates/vmlinuz"
	printf '%s\n' "name: mine" "kernel: vmlinuz" "disks: [{size: 8M, source: empty}]" \
		>"$VI_HOME/templates/mine.yaml"
	run -0 vi template validate mine
	[[ $output == "$VI_HOME/templates/mine.yaml: template 'mine' is valid"* ]]
}

@test "validation errors name file:line:column, with a did-you-mean for unknown keys" {
	tpl bad "kernel: vmlinuz" "memroy: 1G" "disks: [{size: 8M, source: empty}]"
	run -2 vi template validate bad
	[ "$output" = "vi: error: $VI_TEMPLATE_PATH/bad.yaml:3:1: unknown key 'memroy'; did you mean 'memory'?" ]

	tpl bad "kernel: vmlinuz" "cpus: two" "disks: [{size: 8M, source: empty}]"
	run -2 vi template validate bad
	[ "$output" = "vi: error: $VI_TEMPLATE_PATH/bad.yaml:3:7: invalid cpus 'two': expected a whole number" ]

	tpl bad "kernel: vmlinuz" "disks:" "  - source: busybox"
	run -2 vi template validate bad
	[ "$output" = "vi: error: $VI_TEMPLATE_PATH/bad.yaml:4:5: missing required key 'size'" ]

	tpl bad "kernel: vmlinuz" "disks: {size: 8M}"
	run -2 vi template validate bad
	[ "$output" = "vi: error: $VI_TEMPLATE_PATH/bad.yaml:3:8: 'disks' must be a list, not a mapping" ]

	tpl bad "kernel: vmlinuz" "disks:" "  - size: 8M" "    source: {tarbal: x.tar}"
	run -2 vi template validate bad
	[ "$output" = "vi: error: $VI_TEMPLATE_PATH/bad.yaml:5:14: unknown key 'tarbal'; did you mean 'tarball'?" ]

	printf 'kernel: vmlinuz\ndisks: [{size: 8M, source: empty}]\n' >"$BATS_TEST_TMPDIR/anon.yaml"
	run -2 vi template validate "$BATS_TEST_TMPDIR/anon.yaml"
	[ "$output" = "vi: error: $BATS_TEST_TMPDIR/anon.yaml:1:1: missing required key 'name'" ]

	printf 'name: [x\n' >"$BATS_TEST_TMPDIR/broken.yaml"
	run -2 vi template validate "$BATS_TEST_TMPDIR/broken.yaml"
	[[ $output == "vi: error: $BATS_TEST_TMPDIR/broken.yaml:2:1: "* ]]
}

@test "a missing input file is not found, exit 3, at its position" {
	tpl bad "kernel: vmlinuz" "disks:" "  - size: 8M" "    source: {tarball: root.tar.gz}"
	run -3 vi template validate bad
	[ "$output" = "vi: error: $VI_TEMPLATE_PATH/bad.yaml:5:23: tarball 'root.tar.gz': No such file or directory" ]
}

@test "a template given by path needs no search path" {
	tpl web
	mv "$VI_TEMPLATE_PATH/web.yaml" "$VI_TEMPLATE_PATH/vmlinuz" "$BATS_TEST_TMPDIR/"
	run -0 vi template validate "$BATS_TEST_TMPDIR/web.yaml"
	[[ $output == "$BATS_TEST_TMPDIR/web.yaml: template 'web' is valid (sha256:"* ]]
}

@test "an unknown template is not found, with a suggestion" {
	run -3 vi template show tiy
	[ "$output" = "vi: error: no template named 'tiy'; did you mean 'tiny'?" ]
	run -3 vi template build zzzzzz
	[ "$output" = "vi: error: no template named 'zzzzzz' (see 'vi template list')" ]
	run -2 vi template lst
	[ "$output" = "vi: error: unknown subcommand 'template lst'; did you mean 'list'?" ]
}

@test "show resolves parameters; --set changes them and the digest" {
	tpl web "parameters:" "  host: {default: web, description: the host name}" \
		"kernel: vmlinuz" "disks: [{size: 8M, source: busybox}]" 'hostname: ${host}-1'
	run -0 vi template show web
	[ "${lines[0]}" = "# $VI_TEMPLATE_PATH/web.yaml" ]
	[[ ${lines[1]} =~ ^#\ sha256:[0-9a-f]{64}\ \(not\ built\)$ ]]
	grep -qx "hostname: web-1" <<<"$output"
	local digest=${lines[1]:9:64}
	run -0 vi template show --json --set host=db web
	[ "$(jq -r .template.hostname <<<"$output")" = db-1 ]
	[ "$(jq -r .template.parameters.host <<<"$output")" = db ]
	[ "$(jq -r .built <<<"$output")" = false ]
	[ "$(jq -r .image <<<"$output")" = null ]
	[ "$(jq -r .digest <<<"$output")" != "$digest" ]
	run -2 vi template show --set hots=db web
	[ "$output" = "vi: error: template 'web' has no parameter 'hots'; did you mean 'host'?" ]
	run -2 vi template show --set host web
	[ "$output" = "vi: error: invalid --set 'host': expected KEY=VALUE" ]
}

@test "a layered template inherits its base's settings" {
	tpl base "kernel: vmlinuz" "cpus: 2" "memory: 1G" "disks: [{size: 8M, source: busybox}]"
	tpl child "base: base" "memory: 2G" "packages: [git]"
	run -0 vi template show --json child
	[ "$(jq -r .template.base <<<"$output")" = base ]
	[ "$(jq -r .template.cpus <<<"$output")" = 2 ]
	[ "$(jq -r .template.memory <<<"$output")" = 2G ]
	[ "$(jq -r '.template.disks[0].source' <<<"$output")" = base ]
	tpl child "base: base" "disks: [{size: 8M, source: empty}]"
	run -2 vi template validate child
	[ "$output" = "vi: error: $VI_TEMPLATE_PATH/child.yaml:3:8: 'disks' cannot be used with 'base': the disks are overlays on the base's" ]
}

@test "ready: ssh, network and forward are read, recorded in the digest and inherited" {
	local disk="disks: [{size: 8M, source: busybox}]"
	tpl web "kernel: vmlinuz" "$disk" "ready: ssh" "network: user" \
		'forward: ["8080:80", "127.0.0.1:5353:53/udp"]'
	run -0 vi template show --json web
	[ "$(jq -r .template.ready.ssh <<<"$output")" = true ]
	[ "$(jq -r .template.ready.timeout <<<"$output")" = 120 ]
	[ "$(jq -r '.template.network | join(",")' <<<"$output")" = user ]
	[ "$(jq -r '.template.forward | join(",")' <<<"$output")" = "8080:80,127.0.0.1:5353:53/udp" ]
	local digest
	digest=$(jq -r .digest <<<"$output")
	tpl web "kernel: vmlinuz" "$disk" "ready: {ssh: true, timeout: 30}" \
		"network: [user, bridge:br0]" "forward: 8080:80"
	run -0 vi template show --json web
	[ "$(jq -r .template.ready.timeout <<<"$output")" = 30 ]
	[ "$(jq -r '.template.network | join(",")' <<<"$output")" = user,bridge:br0 ]
	[ "$(jq -r '.template.forward | join(",")' <<<"$output")" = 8080:80 ]
	[ "$(jq -r .digest <<<"$output")" != "$digest" ]
	tpl child "base: web" "memory: 1G"
	run -0 vi template show --json child
	[ "$(jq -r .template.ready.ssh <<<"$output")" = true ]
	[ "$(jq -r '.template.network | join(",")' <<<"$output")" = user,bridge:br0 ]
	[ "$(jq -r '.template.forward | join(",")' <<<"$output")" = 8080:80 ]
	tpl child "base: web" "network: none" "forward: []"
	run -0 vi template show --json child
	[ "$(jq -r '.template.network | join(",")' <<<"$output")" = none ]
	[ "$(jq -r .template.forward <<<"$output")" = null ]
}

# A template 'bad' of the given lines after its kernel fails to validate
# with exit code CODE and "FILE:MESSAGE": refused CODE MESSAGE [yaml lines...]
refused() {
	local code=$1 msg=$2
	shift 2
	tpl bad "kernel: vmlinuz" "$@"
	run "-$code" vi template validate bad
	[ "$output" = "vi: error: $VI_TEMPLATE_PATH/bad.yaml:$msg" ]
}

@test "ready, network and forward errors name their line and column" {
	local disk="disks: [{size: 8M, source: busybox}]"
	refused 2 "4:8: 'ready' must be ssh or a mapping, not 'sh'" "$disk" "ready: sh"
	refused 2 "4:8: 'ready' needs exactly one of 'console', 'command' and 'ssh'" \
		"$disk" "ready: {ssh: true, console: login}"
	refused 2 "4:14: 'ssh' must be true or false, not 'maybe'" "$disk" "ready: {ssh: maybe}"
	refused 2 "4:8: 'ready' needs a disk with a root file system" \
		"disks: [{size: 8M, source: empty}]" "ready: ssh"
	refused 2 "4:10: invalid network 'wifi': expected user, nat, bridge:NAME, tap:NAME or none" \
		"$disk" "network: [user, wifi]"
	refused 2 "4:10: invalid network 'bridge:': expected user, nat, bridge:NAME, tap:NAME or none" \
		"$disk" 'network: "bridge:"'
	refused 2 "4:10: network 'none' cannot go with other NICs" "$disk" "network: [none, user]"
	refused 2 "4:10: invalid forward '80': expected [ADDR:]HOST:GUEST[/tcp|/udp]" \
		"$disk" 'forward: ["80"]'
	refused 2 "5:10: 'forward' needs a 'user' network" "$disk" "network: nat" "forward: [8080:80]"
	refused 2 "4:10: 'network' must be a list, not a mapping" "$disk" "network: {mode: user}"
}

@test "programs are host files copied in with their libraries, by content in the digest" {
	local disk="disks: [{size: 8M, source: busybox}]"
	cp /bin/true "$BATS_TEST_TMPDIR/prog"
	tpl web "kernel: vmlinuz" "$disk" "programs: [$BATS_TEST_TMPDIR/prog]"
	run -0 vi template show --json web
	[ "$(jq -r '.template.programs | join(",")' <<<"$output")" = "$BATS_TEST_TMPDIR/prog" ]
	local digest
	digest=$(jq -r .digest <<<"$output")
	printf 'x' >>"$BATS_TEST_TMPDIR/prog"
	run -0 vi template show --json web
	[ "$(jq -r .digest <<<"$output")" != "$digest" ]

	refused 3 "4:11: program '/nonexistent/prog': No such file or directory" \
		"$disk" "programs: [/nonexistent/prog]"
	refused 2 "4:11: program 'bin/true' must be an absolute path" "$disk" "programs: [bin/true]"
	echo text >"$BATS_TEST_TMPDIR/text"
	chmod 644 "$BATS_TEST_TMPDIR/text"
	refused 2 "4:11: program '$BATS_TEST_TMPDIR/text' is not executable" \
		"$disk" "programs: [$BATS_TEST_TMPDIR/text]"
	refused 2 "4:11: 'programs' needs a disk with a root file system" \
		"disks: [{size: 8M, source: empty}]" "programs: [/bin/true]"
}

@test "validate --json lists each template with its digest" {
	tpl web
	run -0 vi template validate --json web tiny
	[ "$(jq -r '.templates | length' <<<"$output")" = 2 ]
	[[ $(jq -r '.templates[0].digest' <<<"$output") =~ ^[0-9a-f]{64}$ ]]
}

@test "nothing built yet: export is not found, rm is not found, import wants an archive" {
	run -3 vi template export tiny "$BATS_TEST_TMPDIR/t.tar"
	[ "$output" = "vi: error: template 'tiny' is not built (see 'vi template build')" ]
	[ ! -e "$BATS_TEST_TMPDIR/t.tar" ]
	run -3 vi template rm tiny
	[ "$output" = "vi: error: no image of template 'tiny' in the store" ]
	run -3 vi template rm sha256:0123456789
	[ "$output" = "vi: error: no image sha256:0123456789 in the store" ]
	run -2 vi template rm sha256:xyz
	[ "$output" = "vi: error: invalid image reference 'sha256:xyz': expected sha256: and 8 to 64 hex digits" ]
	echo "not an archive" >"$BATS_TEST_TMPDIR/junk"
	run -1 vi template import "$BATS_TEST_TMPDIR/junk"
	[ "$output" = "vi: error: cannot read '$BATS_TEST_TMPDIR/junk': Unrecognized archive format" ]
	run -2 vi template export --compress lz4 tiny "$BATS_TEST_TMPDIR/t.tar"
	[ "$output" = "vi: error: invalid --compress 'lz4': expected zstd, gzip or none" ]
	run -0 vi template list --images
	[ "$output" = "" ]
}

@test "template names are completed where a verb takes one" {
	tpl web
	run -0 vi __complete template show ""
	grep -qx web <<<"$output"
	grep -qx tiny <<<"$output"
	grep -qx debian-12 <<<"$output"
	run -0 vi __complete template build deb
	[ "$output" = "$(printf 'debian-12\ndebian-12-dev')" ]
	run -0 vi __complete template ""
	[ "$output" = "$(printf 'build\nexport\nimport\nlist\nrm\nshow\nvalidate')" ]
}

# Writes an archive of one image made by hand: handmade ARCHIVE NAME
# [manifest lines...]. Its directory is named by the digest of its content
# (sha256sum's lines for its files, sorted by name), or $LABEL.
handmade() {
	local archive=$1 name=$2 d=$BATS_TEST_TMPDIR/handmade label
	shift 2
	rm -rf "$d" && mkdir -p "$d/img"
	qemu-img create -q -f qcow2 "$d/img/disk.qcow2" 8M
	printf '%s\n' "schema: ${SCHEMA:-2}" "${DIGEST_KEY:-template_digest}: $(printf '%064d' 1)" \
		"name: $name" "cpus: 1" "max_cpus: 1" "memory: 64M" "max_memory: 64M" \
		"disks: [{file: disk.qcow2, size: 8M}]" "$@" >"$d/img/manifest.yaml"
	label=${LABEL:-$(cd "$d/img" && sha256sum -- * | sort -k2 | sha256sum | cut -c1-64)}
	mv "$d/img" "$d/$label"
	(cd "$d" && sha256sum "$label"/* >SHA256SUMS && tar -cf "$archive" "$label"/* SHA256SUMS)
	echo "$label"
}

# The images in the store, by digest.
stored() {
	vi template list --images --json | jq -r '[.images[].digest] | sort | join(" ")'
}

@test "an imported image is named by its content, and a name no template has finds it" {
	local web
	web=$(handmade "$BATS_TEST_TMPDIR/web.tar" web)
	run -0 vi template import "$BATS_TEST_TMPDIR/web.tar"
	[ "$output" = "imported 'web' (sha256:${web:0:12})" ]
	[ "$(stored)" = "$web" ]
	run -0 vi template export --compress none web "$BATS_TEST_TMPDIR/again.tar"
	[ "$output" = "exported 'web' (sha256:${web:0:12}) to '$BATS_TEST_TMPDIR/again.tar'" ]
	run -0 vi template import "$BATS_TEST_TMPDIR/again.tar"
	[ "$output" = "imported 'web' (sha256:${web:0:12})" ]
}

@test "an image not named by its content is refused; --expect pins what the archive holds" {
	local web other
	other=$(printf '%064d' 7)
	web=$(handmade "$BATS_TEST_TMPDIR/web.tar" web)
	LABEL=$other handmade "$BATS_TEST_TMPDIR/bad.tar" web >/dev/null
	run -1 vi template import "$BATS_TEST_TMPDIR/bad.tar"
	[ "$output" = "vi: error: archive '$BATS_TEST_TMPDIR/bad.tar' is damaged or was altered: image ${other:0:12} is not named by its content (sha256:${web:0:12})" ]
	[ "$(stored)" = "" ]

	run -1 vi template import --expect "sha256:$other" "$BATS_TEST_TMPDIR/web.tar"
	[ "$output" = "vi: error: archive '$BATS_TEST_TMPDIR/web.tar' is damaged or was altered: it holds sha256:$web, not the expected sha256:$other" ]
	[ "$(stored)" = "" ]
	run -2 vi template import --expect "sha256:${web:0:12}" "$BATS_TEST_TMPDIR/web.tar"
	[ "$output" = "vi: error: invalid --expect 'sha256:${web:0:12}': expected sha256: and 64 hex digits" ]
	run -0 vi template import --expect "sha256:$web" "$BATS_TEST_TMPDIR/web.tar"
	[ "$output" = "imported 'web' (sha256:${web:0:12})" ]
}

@test "an imported manifest is checked like a template, and errors name the archive" {
	local a=$BATS_TEST_TMPDIR/bad.tar label
	label=$(handmade "$a" web "hv: ../../x")
	run -1 vi template import "$a"
	[ "$output" = "vi: error: archive '$a' is damaged or was altered: $label/manifest.yaml:9:5: invalid backend name '../../x': it must start with a letter or digit" ]
	label=$(handmade "$a" ../web)
	run -1 vi template import "$a"
	[ "$output" = "vi: error: archive '$a' is damaged or was altered: $label/manifest.yaml:3:7: invalid template name '../web': it must start with a letter or digit" ]
	label=$(handmade "$a" web 'description: "x\e]0;PWNED\a"')
	run -1 vi template import "$a"
	[ "$output" = "vi: error: archive '$a' is damaged or was altered: $label/manifest.yaml:9:14: 'description' has a control character" ]
	label=$(handmade "$a" web "memroy: 1G")
	run -1 vi template import "$a"
	[ "$output" = "vi: error: archive '$a' is damaged or was altered: $label/manifest.yaml:9:1: unknown key 'memroy'; did you mean 'memory'?" ]
	[ "$(stored)" = "" ]
	[ -z "$(ls -A "$VI_HOME/images" | grep -vx .locks)" ]
}

@test "an import takes no name another stored image has without --force" {
	local v1 v2
	v1=$(handmade "$BATS_TEST_TMPDIR/v1.tar" web "version: '1'")
	v2=$(handmade "$BATS_TEST_TMPDIR/v2.tar" web "version: '2'")
	vi -q template import "$BATS_TEST_TMPDIR/v1.tar"
	run -5 vi template import "$BATS_TEST_TMPDIR/v2.tar"
	[ "$output" = "vi: error: archive '$BATS_TEST_TMPDIR/v2.tar': the store has another image of 'web' (sha256:${v1:0:12}); --force imports this one in its place" ]
	[ "$(stored)" = "$v1" ]
	run -0 vi template import --force "$BATS_TEST_TMPDIR/v2.tar"
	[ "$output" = "imported 'web' (sha256:${v2:0:12})" ]
	run -0 vi template export web "$BATS_TEST_TMPDIR/out.tar"
	[ "$output" = "exported 'web' (sha256:${v2:0:12}) to '$BATS_TEST_TMPDIR/out.tar'" ]
	run -0 vi template rm web
	[ "$output" = "removed 2 images of 'web'" ]
}

@test "images of an earlier version: a store keeps them, an archive lands by content" {
	local old
	old=$(printf '%064d' 1)
	LABEL=$old SCHEMA=1 DIGEST_KEY=digest handmade "$BATS_TEST_TMPDIR/old.tar" web >/dev/null
	mkdir -p "$VI_HOME/images"
	cp -r "$BATS_TEST_TMPDIR/handmade/$old" "$VI_HOME/images/"
	run -0 vi template export --compress none web "$BATS_TEST_TMPDIR/out.tar"
	[ "$output" = "exported 'web' (sha256:${old:0:12}) to '$BATS_TEST_TMPDIR/out.tar'" ]
	run -0 vi template rm web
	[ "$output" = "removed 1 image of 'web'" ]

	local content
	content=$(cd "$BATS_TEST_TMPDIR/handmade/$old" && sha256sum -- * | sort -k2 | sha256sum | cut -c1-64)
	run -0 vi template import "$BATS_TEST_TMPDIR/old.tar"
	[ "$output" = "imported 'web' (sha256:${content:0:12})" ]
	[ "$(stored)" = "$content" ]
}
