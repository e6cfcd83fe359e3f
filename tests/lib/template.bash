# Helpers for the template suites: a store that QEMU can read, digests, and
# booting a built image through hv-qemu to its readiness marker.

# QEMU under libvirt runs as another user: every directory on the way to
# the images must let it through.
traversable() {
	local d=$1
	while [ "$d" != / ]; do
		chmod o+x "$d"
		d=$(dirname "$d")
	done
}

# Builds template tiny in $VI_HOME and prints what vi says. Within one run of
# tests/run ($VI_TEST_CACHE set) it is built once, in a store of the run's, and
# each suite's store takes its images by hard link: a golden image is never
# written, and everything else in the store stays the suite's own.
build_tiny() {
	if [ -z "${VI_TEST_CACHE:-}" ]; then
		vi template build tiny
		return
	fi
	local cache=$VI_TEST_CACHE/tiny
	(
		flock 9
		[ -e "$cache/built" ] && exit 0
		mkdir -p "$cache/home"
		traversable "$cache/home"
		VI_HOME=$cache/home vi template build tiny >"$cache/out" 2>&1 || { cat "$cache/out"; exit 1; }
		touch "$cache/built"
	) 9>"$VI_TEST_CACHE/tiny.lock" || return 1
	mkdir -p "$VI_HOME"
	[ -e "$VI_HOME/images" ] || cp -al "$cache/home/images" "$VI_HOME/"
	vi template build tiny
}

# setup_file of a suite that boots tiny: a store of the file's own that QEMU
# can read, tiny built in it (what vi said in $BATS_FILE_TMPDIR/tiny.out).
tiny_store() {
	export VI_HOME=$BATS_FILE_TMPDIR/home
	mkdir -p "$VI_HOME"
	traversable "$VI_HOME"
	build_tiny >"$BATS_FILE_TMPDIR/tiny.out" 2>&1 || { cat "$BATS_FILE_TMPDIR/tiny.out"; return 1; }
}

# The image a build of template NAME made: digest_of NAME
digest_of() {
	vi template show --json "$1" | jq -r .image_digest
}

# The digest an image directory is named by: sha256sum's lines for its
# files, sorted by file name, hashed again.
content_digest() {
	(cd "$1" && sha256sum -- * | sort -k2 | sha256sum | cut -c1-64)
}

# A field of an image's manifest.yaml, unquoted: manifest_field DIR KEY
manifest_field() {
	sed -n "s/^ *$2: '\\?\\([^']*\\)'\\?\$/\\1/p" "$1/manifest.yaml" | head -n 1
}

# Skips the test unless hv-qemu answers ok here.
need_hv_qemu() {
	local out probe
	out=$(vi hv list --json)
	probe=$(jq -r '.backends[] | select(.name == "qemu") | .probe' <<<"$out")
	[ "$probe" = ok ] ||
		skip "hv-qemu is not usable here: $(jq -r '.backends[] | select(.name == "qemu") | .reason' <<<"$out")"
}

# Boots the image in DIR as VM NAME on a qcow2 overlay of its disk, with its
# kernel, initrd, command line and memory, and waits for its readiness
# marker on the console: boot_image DIR NAME
boot_image() {
	local img=$1 name=$2 disk=$BATS_TEST_TMPDIR/$2/disk.qcow2
	local marker timeout log=$VI_HOME/vms/$2/run/console.log
	mkdir -p "${disk%/*}"
	traversable "${disk%/*}"
	qemu-img create -q -f qcow2 -b "$img/disk.qcow2" -F qcow2 "$disk"
	marker=$(manifest_field "$img" marker)
	timeout=$(manifest_field "$img" timeout)
	[ -n "$marker" ] || { echo "no readiness marker in $img/manifest.yaml"; return 1; }
	vi -q create --hv qemu --kernel "$img/kernel" --initrd "$img/initrd" \
		--cmdline "$(manifest_field "$img" cmdline)" \
		--memory "$(manifest_field "$img" memory)" --disk "$disk" --start "$name"
	# Under TCG a boot takes several times the template's timeout for KVM.
	for _ in $(seq $((timeout * 3))); do
		grep -q "$marker" "$log" 2>/dev/null && return 0
		grep -q "Kernel panic" "$log" 2>/dev/null && break
		sleep 1
	done
	echo "no '$marker' on the console of $name:"
	tail -20 "$log"
	vi stop --force "$name" || true
	vi destroy "$name" || true
	return 1
}

# Waits until TEXT is on VM NAME's console, for up to SECONDS (120):
# wait_console NAME TEXT [SECONDS]
wait_console() {
	local log=$VI_HOME/vms/$1/run/console.log
	for _ in $(seq $((${3:-120} * 2))); do
		grep -q "$2" "$log" 2>/dev/null && return 0
		sleep 0.5
	done
	echo "no '$2' on the console of $1:"
	tail -20 "$log"
	return 1
}

# Runs a command line in a root shell on the serial console of VM NAME (a
# busybox image that logs root in without a password) and prints what the
# console showed: guest_sh NAME COMMAND
guest_sh() {
	{
		sleep 1
		printf 'root\r'
		sleep 2
		printf '%s\r' "$2"
		sleep 3
		printf '\x1d'
	} | vi console "$1"
}
