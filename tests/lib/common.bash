# Shared set-up for the bats suites: the vi under test first on PATH, a
# private store per test, and the fixture plugins where a test asks for them.
bats_require_minimum_version 1.5.0

VI_TOP=${VI_TOP:-$(cd "$BATS_TEST_DIRNAME/.." && pwd)}
VI_BUILD=${VI_BUILD:-build}
case $VI_BUILD in /*) ;; *) VI_BUILD=$VI_TOP/$VI_BUILD ;; esac
export VI_TOP VI_BUILD
export PATH=$VI_BUILD:$PATH

common_setup() {
	export VI_HOME=$BATS_TEST_TMPDIR/home
	unset VI_PLUGIN_DIR VISUAL EDITOR
}

# A copy of vi with no plugins/ beside it, so only $VI_PLUGIN_DIR counts.
isolate_plugins() {
	mkdir -p "$BATS_TEST_TMPDIR/bin"
	cp "$VI_BUILD/vi" "$BATS_TEST_TMPDIR/bin/vi"
	export PATH=$BATS_TEST_TMPDIR/bin:$PATH
}

# The working fixture plugins only (no load warnings on stderr).
use_fixture_plugins() {
	isolate_plugins
	export VI_PLUGIN_DIR=$BATS_TEST_TMPDIR/plugins
	mkdir -p "$VI_PLUGIN_DIR"
	ln -sf "$VI_BUILD/tests/plugins/hv-fixture.so" "$VI_BUILD/tests/plugins/hv-bare.so" \
		"$VI_BUILD/tests/plugins/hv-older.so" \
		"$VI_PLUGIN_DIR/"
}

# Every fixture plugin, the broken ones included.
use_all_fixture_plugins() {
	isolate_plugins
	export VI_PLUGIN_DIR=$VI_BUILD/tests/plugins
}

# A private template search path, $VI_TEMPLATE_PATH, with a stand-in kernel.
template_path_setup() {
	export VI_TEMPLATE_PATH=$BATS_TEST_TMPDIR/t
	mkdir -p "$VI_TEMPLATE_PATH"
	echo "not really a kernel" >"$VI_TEMPLATE_PATH/vmlinuz"
}

# Writes a minimal VM definition: define_vm NAME [extra yaml lines...]
define_vm() {
	local name=$1
	shift
	mkdir -p "$VI_HOME/vms/$name"
	{
		echo "schema: 1"
		echo "name: $name"
		echo "uuid: 8a1f5c3e-1111-4222-8333-444455556666"
		echo "hv: fixture"
		echo "cpus: 2"
		echo "memory: 512M"
		printf '%s\n' "$@"
	} >"$VI_HOME/vms/$name/vm.yaml"
}

# A qcow2 golden image in the current directory, its first MiB 0x11:
# golden_image [SIZE]
golden_image() {
	qemu-img create -q -f qcow2 golden.qcow2 "${1:-1G}"
	qemu-io -c 'write -P 0x11 0 1M' golden.qcow2 >/dev/null
}

# Fails naming the first file under DIR that a user with no part in it
# (nobody, no groups) can read: nothing_readable_by_others DIR
nothing_readable_by_others() {
	local f
	while IFS= read -r f; do
		if setpriv --reuid=65534 --regid=65534 --clear-groups -- cat "$f" >/dev/null 2>&1; then
			echo "readable by another user: $f"
			return 1
		fi
	done < <(find "$1" -type f)
}

# A TCP port of 127.0.0.1 that is free now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
