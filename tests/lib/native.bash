# Shared by the suites of the native VMM (hv-svm or hv-vtx, whichever matches this
# CPU) and its test kernels: setup and teardown, which a suite may wrap. Load after
# lib/common.

native_setup() {
	common_setup
	[ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "/dev/kvm is not usable here"
	hv=svm
	grep -q GenuineIntel /proc/cpuinfo && hv=vtx
	guest=$VI_BUILD/tests/guest
	cd "$BATS_TEST_TMPDIR"
}

native_teardown() {
	for vm in $(vi list --json 2>/dev/null | jq -r '.vms[].name'); do
		vi -q destroy --force "$vm" || true
	done
}

setup() {
	native_setup
}

teardown() {
	native_teardown
}

# Waits until the console log holds $2, or the VM's process is gone and it
# does not.
wait_console() { # NAME TEXT [seconds]
	local log=$VI_HOME/vms/$1/run/console.log
	for _ in $(seq $((${3:-20} * 10))); do
		grep -qF -- "$2" "$log" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "'$2' not in $log:"
	cat "$log" 2>/dev/null
	return 1
}
