#!/usr/bin/env bats
# Template builds for real: tiny and a template layered on it are built once
# (one libguestfs appliance each) into a store shared by this file's tests,
# then checked by qemu-img and libguestfs, booted through hv-qemu, rebuilt
# from the cache, exported, imported, tampered with and removed.

load lib/common
load lib/template

setup_file() {
	export VI_HOME=$BATS_FILE_TMPDIR/home
	export VI_TEMPLATE_PATH=$BATS_FILE_TMPDIR/t
	mkdir -p "$VI_HOME" "$VI_TEMPLATE_PATH"
	traversable "$VI_HOME"
	cat >"$VI_TEMPLATE_PATH/tiny-app.yaml" <<-'EOF'
		name: tiny-app
		description: tiny with a user, files, a build step and a first-boot command
		base: tiny
		parameters:
		  greeting: hello
		hostname: app
		users:
		  - name: dev
		    ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKeyOnly dev@example"]
		files:
		  - path: /etc/motd
		    content: "${greeting} from tiny-app\n"
		  - path: /home/dev/notes
		    content: "private\n"
		    owner: dev
		    mode: "0600"
		run:
		  - echo built > /etc/built-by-run
		first_boot:
		  - echo first boot of tiny-app > /dev/console
	EOF
	vi template build tiny >"$BATS_FILE_TMPDIR/tiny.out" 2>&1 || true
	vi template build tiny-app >"$BATS_FILE_TMPDIR/app.out" 2>&1 || true
}

setup() {
	unset VI_PLUGIN_DIR VISUAL EDITOR
}

@test "tiny builds into images/<digest of its content>/, printing one line when piped" {
	run cat "$BATS_FILE_TMPDIR/tiny.out"
	[ "${#lines[@]}" -eq 1 ] || { echo "$output"; return 1; }
	local d
	d=$(digest_of tiny)
	[ "$output" = "built template 'tiny' as sha256:${d:0:12} in ${output##* in }" ]
	[ "$(content_digest "$VI_HOME/images/$d")" = "$d" ]
	grep -qx "template_digest: $(vi template show --json tiny | jq -r .digest)" \
		"$VI_HOME/images/$d/manifest.yaml"
	# Root's, for guests (QEMU's group) to read, for no one to write.
	for f in disk.qcow2 kernel initrd manifest.yaml; do
		[ "$(stat -c '%a %U %G' "$VI_HOME/images/$d/$f")" = "440 root libvirt-qemu" ] ||
			{ echo "$f"; return 1; }
	done
	[ "$(stat -c %a "$VI_HOME/images/$d")" = 711 ]
	run -0 vi template show tiny
	[[ ${lines[1]} == *" (built as sha256:${d:0:12})" ]]
	run -0 vi template list
	grep -Eq "^tiny +1 +${d:0:12} " <<<"$output"
}

@test "tiny's initrd is vi's minimal one: busybox, its init and the modules that mount the root" {
	local d
	d=$(digest_of tiny)
	run -0 bash -c "zcat '$VI_HOME/images/$d/initrd' | cpio -it --quiet | sort"
	for f in init bin/busybox dev/console modules lib/modules/virtio_blk.ko lib/modules/ext4.ko; do
		grep -qx "$f" <<<"$output" || { echo "no $f in: $output"; return 1; }
	done
	# Loaded in order, each after what it needs.
	run -0 bash -c "zcat '$VI_HOME/images/$d/initrd' | cpio -i --quiet --to-stdout modules"
	grep -qx ext4.ko <<<"$output"
	grep -qx virtio-rng.ko <<<"$output"
	grep -n . <<<"$output" | awk -F: '/^[0-9]+:jbd2.ko$/ { j = $1 } /^[0-9]+:ext4.ko$/ { e = $1 } END { exit !(j && j < e) }'
	[ "$(stat -c %s "$VI_HOME/images/$d/initrd")" -lt $((8 << 20)) ]
}

@test "every disk the build wrote passes qemu-img check" {
	local tiny app
	tiny=$(digest_of tiny)
	app=$(digest_of tiny-app)
	run -0 qemu-img check "$VI_HOME/images/$tiny/disk.qcow2"
	[[ $output == *"No errors were found on the image."* ]]
	run -0 qemu-img check "$VI_HOME/images/$app/disk.qcow2"
	[[ $output == *"No errors were found on the image."* ]]
}

@test "a second build is a cache hit and starts no appliance" {
	local d
	d=$(digest_of tiny)
	local before
	before=$(stat -c %Y "$VI_HOME/images/$d/disk.qcow2")
	# A backend that cannot exist: any appliance launch would fail.
	LIBGUESTFS_BACKEND=nosuch run -0 vi template build tiny
	[ "$output" = "template 'tiny' is up to date: sha256:${d:0:12}" ]
	run -0 vi template build --json tiny-app
	[ "$(jq -r .built <<<"$output")" = false ]
	[ "$(stat -c %Y "$VI_HOME/images/$d/disk.qcow2")" = "$before" ]
}

@test "a layered template is a qcow2 overlay on its base's image" {
	run cat "$BATS_FILE_TMPDIR/app.out"
	[[ $output =~ ^built\ template\ \'tiny-app\'\ as\ sha256:[0-9a-f]{12}\ in ]] ||
		{ echo "$output"; return 1; }
	local tiny app
	tiny=$(digest_of tiny)
	app=$(digest_of tiny-app)
	run -0 qemu-img info --output=json "$VI_HOME/images/$app/disk.qcow2"
	[ "$(jq -r .format <<<"$output")" = qcow2 ]
	[ "$(jq -r '."backing-filename"' <<<"$output")" = "../$tiny/disk.qcow2" ]
	grep -qx "  name: tiny" "$VI_HOME/images/$app/manifest.yaml"
	grep -qx "  digest: $tiny" "$VI_HOME/images/$app/manifest.yaml"
	# The base's kernel is shared, not copied.
	[ "$(stat -c %i "$VI_HOME/images/$app/kernel")" = "$(stat -c %i "$VI_HOME/images/$tiny/kernel")" ]
}

@test "libguestfs inspects both images and finds the steps in the layered one" {
	local tiny app
	tiny=$(digest_of tiny)
	app=$(digest_of tiny-app)
	export LIBGUESTFS_BACKEND=direct
	[ -e /sys/module/kvm_intel ] || [ -e /sys/module/kvm_amd ] || export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
	run -0 guestfish --ro --format=qcow2 -a "$VI_HOME/images/$tiny/disk.qcow2" \
		-a "$VI_HOME/images/$app/disk.qcow2" <<-'EOF'
		run
		inspect-os
		inspect-get-type /dev/sda1
		inspect-get-hostname /dev/sda1
		inspect-get-hostname /dev/sdb1
		mount /dev/sdb1 /
		cat /etc/motd
		cat /etc/built-by-run
		cat /home/dev/.ssh/authorized_keys
		stat /home/dev/notes
		is-file /usr/lib/vi/first-boot.d/20-tiny-app
	EOF
	[ "${lines[0]}" = /dev/sda1 ]
	[ "${lines[1]}" = /dev/sdb1 ]
	[ "${lines[2]}" = linux ]
	[ "${lines[3]}" = tiny ]
	[ "${lines[4]}" = app ]
	[ "${lines[5]}" = "hello from tiny-app" ]
	[ "${lines[6]}" = built ]
	[ "${lines[7]}" = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKeyOnly dev@example" ]
	grep -qx "uid: 1000" <<<"$output"
	grep -qx "mode: 33152" <<<"$output" # a regular file, 0600
	[ "${lines[-1]}" = true ]
}

@test "tiny boots through hv-qemu to its readiness marker and stops on the power button" {
	need_hv_qemu
	local img
	img=$VI_HOME/images/$(digest_of tiny)
	# ready: ssh prints its marker once the SSH server listens.
	[ "$(manifest_field "$img" marker)" = vi-guest-ready ]
	[ "$(manifest_field "$img" ssh)" = true ]
	[ "$(manifest_field "$img" user)" = root ]
	# A name of its own: libvirt's system connection outlives the test.
	local name=tiny-$$
	boot_image "$img" "$name"
	# The image took the name vi handed it on the kernel command line (getty
	# may print its prompt after the SSH server answers).
	wait_console "$name" "$name login:" 180
	run -0 vi stop "$name"
	[ "$output" = "stopped VM '$name'" ]
	grep -q "reboot: Power down" "$VI_HOME/vms/$name/run/console.log"
	run -0 vi destroy "$name"
}

# Makes VM NAME from tiny with, in place of the seed vi made, one that
# seed-write writes with the further arguments, and a 128M root disk, and
# starts it: seeded_tiny NAME [seed-write options] ID HOSTNAME USER
seeded_tiny() {
	local name=$1 dir=$VI_HOME/vms/$1
	shift
	vi -q create --template tiny "$name"
	grep -q '^- path: seed.img$' "$dir/vm.yaml"
	qemu-img resize -q "$dir/disks/disk0.qcow2" 128M
	"$VI_BUILD/tests/lib/seed-write" --grow "$dir/disks/disk0.qcow2" "$@"
	vi -q start "$name"
}

@test "a machine from tiny takes its seed at first boot: name, user, keys, host key, root size" {
	need_hv_qemu
	local name=seed-$$ k=$BATS_TEST_TMPDIR/key h=$BATS_TEST_TMPDIR/host log
	log=$VI_HOME/vms/$name/run/console.log
	ssh-keygen -q -t ed25519 -N '' -C test -f "$k"
	ssh-keygen -q -t ed25519 -N '' -C host -f "$h"
	seeded_tiny "$name" --key "$(cat "$k.pub")" --host-key "$h" --grow-root \
		"$VI_HOME/vms/$name/seed.img" "i-$name" web alice
	wait_console "$name" vi-guest-ready 180
	# The SSH server may answer before getty prints its prompt.
	wait_console "$name" "web login: " 180
	run -0 tr -d '\r' <"$log"
	grep -qx "vi: seed: host name web" <<<"$output"
	grep -qx "vi: seed: user alice, 1 key, sudo" <<<"$output"
	grep -qx "vi: seed: host key $(cut -d' ' -f1,2 "$h.pub")" <<<"$output"
	grep -qx "vi: seed: root file system on /dev/vda1 grown to 1[12][0-9].*M" <<<"$output"
	grep -qx "web login: " <<<"$output"
	# dropbear runs with the seed's key; alice got the key and an account.
	run -0 guest_sh "$name" 'pidof dropbear && ps | grep -c "[d]ropbear -s -r /etc/dropbear/dropbear_ed25519_host_key" && cat /home/alice/.ssh/authorized_keys && ls -ln /home/alice/.ssh && grep ^alice: /etc/passwd /etc/shadow'
	output=$(tr -d '\r' <<<"$output")
	grep -qx "1" <<<"$output"
	grep -qx "$(cat "$k.pub")" <<<"$output"
	grep -Eq "^-rw------- +1 1000 +1000 .* authorized_keys$" <<<"$output"
	grep -qx "/etc/passwd:alice:x:1000:1000::/home/alice:/bin/sh" <<<"$output"
	grep -qx "/etc/shadow:alice:\*::0:99999:7:::" <<<"$output"
	# Once per instance: the next boot applies nothing again.
	vi -q stop "$name"
	vi -q start "$name"
	wait_console "$name" vi-guest-ready 180
	[ "$(grep -c "vi: seed: user alice" "$log")" = 0 ]
	vi -q stop --force "$name"
	vi -q destroy "$name"
}

@test "the store is private: another user reads nothing; guests read golden images and layers, write neither" {
	need_hv_qemu
	local name=priv-$$ img f
	img=$VI_HOME/images/$(digest_of tiny-app)
	vi -q create --template tiny-app --hv qemu --start "$name"
	sleep 2
	# A live clone freezes the running disk into a layer.
	vi -q clone "$name" "$name-c"
	local layer=$VI_HOME/images/layers/$(vi show --json "$name-c" | jq -r '.vm.disks[0].layer').qcow2
	[ -f "$layer" ]
	for f in "$img/disk.qcow2" "$img/kernel" "$layer"; do
		setpriv --reuid=libvirt-qemu --regid=libvirt-qemu --init-groups -- test -r "$f"
		! setpriv --reuid=libvirt-qemu --regid=libvirt-qemu --init-groups -- test -w "$f" || false
	done
	vi -q stop --force "$name"
	# libvirt gave nothing of the chain to QEMU's user for good.
	[ "$(stat -c %u "$img/disk.qcow2")" = 0 ]
	[ "$(stat -c %u "$layer")" = 0 ]
	[ "$(stat -c %u "$img/kernel")" = 0 ]
	# A user with no part in it reads no file of the store (the golden
	# image holds /home/dev/notes, mode 0600 in the guest).
	nothing_readable_by_others "$VI_HOME"
	vi -q destroy "$name-c"
	vi -q destroy "$name"
}

@test "export and import carry the images and their sums to another store" {
	local tiny app
	tiny=$(digest_of tiny)
	app=$(digest_of tiny-app)
	run -0 vi template export tiny-app "$BATS_TEST_TMPDIR/app.tar.zst"
	[ "$output" = "exported 'tiny-app' (sha256:${app:0:12}) to '$BATS_TEST_TMPDIR/app.tar.zst'" ]
	# The sums are SHA-256 of the files, as sha256sum sees them.
	mkdir "$BATS_TEST_TMPDIR/x"
	tar --zstd -xf "$BATS_TEST_TMPDIR/app.tar.zst" -C "$BATS_TEST_TMPDIR/x"
	(cd "$BATS_TEST_TMPDIR/x" && sha256sum --quiet -c SHA256SUMS)
	[ "$(wc -l <"$BATS_TEST_TMPDIR/x/SHA256SUMS")" = 8 ]

	local other=$BATS_TEST_TMPDIR/other
	run -0 vi --home "$other" template import "$BATS_TEST_TMPDIR/app.tar.zst"
	[ "${lines[0]}" = "imported 'tiny' (sha256:${tiny:0:12})" ]
	[ "${lines[1]}" = "imported 'tiny-app' (sha256:${app:0:12})" ]
	cmp "$VI_HOME/images/$app/disk.qcow2" "$other/images/$app/disk.qcow2"
	run -0 qemu-img check "$other/images/$app/disk.qcow2"
	run -0 qemu-img info --backing-chain "$other/images/$app/disk.qcow2"
	[[ $output == *"image: $other/images/$app/../$tiny/disk.qcow2"* ]]
	run -0 vi --home "$other" template list --images --json
	[ "$(jq -r '[.images[].digest] | sort | join(" ")' <<<"$output")" = "$(printf '%s\n' "$tiny" "$app" | sort | tr '\n' ' ' | sed 's/ $//')" ]

	# Where no template has the name, the stored image of that name serves.
	VI_TEMPLATE_PATH=$BATS_TEST_TMPDIR/none run -0 vi --home "$other" template export \
		--compress none tiny-app "$BATS_TEST_TMPDIR/again.tar"
	[ "$output" = "exported 'tiny-app' (sha256:${app:0:12}) to '$BATS_TEST_TMPDIR/again.tar'" ]

	# gzip works too, and an image already present is kept as it is.
	run -0 vi template export --compress gzip tiny "$BATS_TEST_TMPDIR/tiny.tar.gz"
	gzip -t "$BATS_TEST_TMPDIR/tiny.tar.gz"
	run -0 vi --home "$other" template import "$BATS_TEST_TMPDIR/tiny.tar.gz"
	[ "$output" = "imported 'tiny' (sha256:${tiny:0:12})" ]
}

@test "a tampered archive is refused and the store is left as it was" {
	local app
	app=$(digest_of tiny-app)
	run -0 vi template export --compress none tiny-app "$BATS_TEST_TMPDIR/app.tar"
	local x=$BATS_TEST_TMPDIR/x
	mkdir "$x"
	tar -xf "$BATS_TEST_TMPDIR/app.tar" -C "$x"
	# Every file under its own name, as vi writes them: no directory entries.
	local files
	files=$(tar -tf "$BATS_TEST_TMPDIR/app.tar")
	echo "extra" >>"$x/$app/kernel"
	(cd "$x" && tar -cf "$BATS_TEST_TMPDIR/bad.tar" $files)

	local other=$BATS_TEST_TMPDIR/other
	run -1 vi --home "$other" template import "$BATS_TEST_TMPDIR/bad.tar"
	[ "$output" = "vi: error: archive '$BATS_TEST_TMPDIR/bad.tar' is damaged or was altered: '$app/kernel' does not match its SHA-256 sum" ]
	[ -z "$(ls -A "$other/images" | grep -vx .locks)" ]

	# A file the sums do not list is refused as well.
	grep -v "$app/kernel" "$x/SHA256SUMS" >"$x/sums" && mv "$x/sums" "$x/SHA256SUMS"
	(cd "$x" && tar -cf "$BATS_TEST_TMPDIR/bad.tar" $files)
	run -1 vi --home "$other" template import "$BATS_TEST_TMPDIR/bad.tar"
	[ "$output" = "vi: error: archive '$BATS_TEST_TMPDIR/bad.tar' is damaged or was altered: '$app/kernel' is not in SHA256SUMS" ]
	[ -z "$(ls -A "$other/images" | grep -vx .locks)" ]
}

@test "rm refuses while a layered image or a VM reads from an image" {
	local tiny app
	tiny=$(digest_of tiny)
	app=$(digest_of tiny-app)
	local other=$BATS_TEST_TMPDIR/other
	vi template export tiny-app "$BATS_TEST_TMPDIR/app.tar.zst"
	vi -q --home "$other" template import "$BATS_TEST_TMPDIR/app.tar.zst"

	run -5 vi --home "$other" template rm tiny
	[ "$output" = "vi: error: image sha256:${tiny:0:12} is the base of 'tiny-app' (sha256:${app:0:12})" ]

	use_fixture_plugins
	qemu-img create -q -f qcow2 -b "$other/images/$app/disk.qcow2" -F qcow2 "$BATS_TEST_TMPDIR/vm.qcow2"
	vi -q --home "$other" create --hv fixture --disk "$BATS_TEST_TMPDIR/vm.qcow2" vm1
	run -5 vi --home "$other" template rm tiny-app
	[ "$output" = "vi: error: image sha256:${app:0:12} is in use by VM 'vm1'" ]
	vi -q --home "$other" destroy vm1

	run -0 vi --home "$other" template rm tiny-app
	[ "$output" = "removed 1 image of 'tiny-app'" ]
	run -0 vi --home "$other" template rm "sha256:${tiny:0:12}"
	[ "$output" = "removed 1 image of 'sha256:${tiny:0:12}'" ]
	[ -z "$(ls -A "$other/images" | grep -vxE '\.locks|names')" ]
	[ -z "$(ls -A "$other/images/names")" ]
}

@test "an altered archive lands only under its own digest and never stands in for the build" {
	local tiny altered x=$BATS_TEST_TMPDIR/x a=$BATS_TEST_TMPDIR/altered.tar
	tiny=$(digest_of tiny)
	vi template export --compress none tiny "$BATS_TEST_TMPDIR/tiny.tar"
	mkdir "$x"
	tar -xf "$BATS_TEST_TMPDIR/tiny.tar" -C "$x"
	sed -i 's|quiet|quiet init=/bin/sh|' "$x/$tiny/manifest.yaml"
	altered=$(content_digest "$x/$tiny")
	(cd "$x" && sha256sum "$tiny"/* >SHA256SUMS && tar -cf "$a" "$tiny"/* SHA256SUMS)
	run -1 vi template import "$a"
	[ "$output" = "vi: error: archive '$a' is damaged or was altered: image ${tiny:0:12} is not named by its content (sha256:${altered:0:12})" ]

	# Named by its new content it is another image, which takes the name
	# only with --force; the template's build still is what 'tiny' means.
	mv "$x/$tiny" "$x/$altered"
	(cd "$x" && sha256sum "$altered"/* >SHA256SUMS && tar -cf "$a" "$altered"/* SHA256SUMS)
	run -1 vi template import --expect "sha256:$tiny" "$a"
	[ "$output" = "vi: error: archive '$a' is damaged or was altered: it holds sha256:$altered, not the expected sha256:$tiny" ]
	run -5 vi template import "$a"
	[ "$output" = "vi: error: archive '$a': the store has another image of 'tiny' (sha256:${tiny:0:12}); --force imports this one in its place" ]
	run -0 vi template import --force "$a"
	[ "$output" = "imported 'tiny' (sha256:${altered:0:12})" ]
	LIBGUESTFS_BACKEND=nosuch run -0 vi template build tiny
	[ "$output" = "template 'tiny' is up to date: sha256:${tiny:0:12}" ]
	use_fixture_plugins # a copy of vi away from the source tree's templates
	VI_TEMPLATE_PATH=$VI_TOP/templates vi -q create --hv fixture --template tiny vm1
	run -0 vi show --json vm1
	[ "$(jq -r .vm.template_digest <<<"$output")" = "$tiny" ]
	vi -q destroy vm1
	run -0 vi template rm "sha256:$altered"
	[ "$output" = "removed 1 image of 'sha256:$altered'" ]
}

@test "a killed build leaves its temporary files in the store, and the next build clears them" {
	printf '%s\n' "name: tiny-stuck" "base: tiny" "run: [sleep 3600]" \
		>"$VI_TEMPLATE_PATH/tiny-stuck.yaml"
	vi template build tiny-stuck >/dev/null 2>&1 &
	local pid=$! tmp
	# libguestfs makes its directory when the appliance starts; the build
	# notes where its sockets went once it runs.
	for _ in $(seq 600); do
		tmp=$(compgen -G "$VI_HOME/images/.new-*-$pid-*/.tmp/libguestfs*") &&
			[ -e "${tmp%/libguestfs*}/sockdir" ] && break
		sleep 0.5
	done
	kill -9 "$pid"
	wait "$pid" || true
	rm "$VI_TEMPLATE_PATH/tiny-stuck.yaml"
	[ -d "$tmp" ] || { echo "no temporary directory of the build in the store"; return 1; }
	# libguestfs's sockets are in /tmp whatever one says; the build noted where.
	local sock
	sock=$(cat "${tmp%/libguestfs*}/sockdir")
	[[ $sock == /tmp/libguestfs* ]]
	LIBGUESTFS_BACKEND=nosuch run -0 vi template build tiny
	[ -z "$(compgen -G "$VI_HOME/images/.new-*")" ]
	[ ! -e "$sock" ]
}
