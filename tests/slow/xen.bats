#!/usr/bin/env bats
# hv-xen on a real Xen host: Debian's Xen 4.17 with a Debian dom0, booted
# under QEMU's software emulation by tests/xen/run, where vi drives libvirt's
# libxl driver at xen:///system. The session in dom0 reports each step on the
# serial console; these tests judge those lines. The first run builds the
# host image (debootstrap and apt, several minutes); the session itself takes
# several minutes more of emulated Xen. VI_XEN_TYPES picks the guest types
# (default pv,pvh,hvm: those Xen cannot run here are skipped, with its reason).

load ../lib/common

setup_file() {
	[ "$(id -u)" = 0 ] || return 0
	"$VI_TOP/tests/xen/run" -o "$BATS_FILE_TMPDIR/console.log" \
		--types "${VI_XEN_TYPES:-pv,pvh,hvm}" >"$BATS_FILE_TMPDIR/session.out" 2>&1 || true
}

setup() {
	[ "$(id -u)" = 0 ] || skip "the Xen test host needs root to build (debootstrap)"
	out=$BATS_FILE_TMPDIR/session.out
}

# passed STEP...: each step printed its PASS line.
passed() {
	local s
	for s in "$@"; do
		grep -q "^VI-XEN: PASS $s\( (\|$\)" "$out" && continue
		echo "step '$s' did not pass; the session said:"
		cat "$out"
		echo "the console's end:"
		tail -n 60 "$BATS_FILE_TMPDIR/console.log"
		return 1
	done
}

# lifecycle TYPE: the guest steps, or a skip when Xen said it cannot run TYPE.
lifecycle() {
	local why
	why=$(sed -n "s/^VI-XEN: SKIP $1: //p" "$out")
	[ -z "$why" ] || skip "$why"
	passed "$1-create" "$1-start" "$1-marker" "$1-stop" "$1-destroy" "$1-gone"
}

@test "Xen boots dom0, whose xenstored, xenconsoled and libvirtd start" {
	passed dom0 xen-daemons libvirtd
	grep -q '^(XEN) Xen version 4.17' "$BATS_FILE_TMPDIR/console.log"
}

@test "vi caps in dom0: the hv-xen probe answers ok on xen:///system" {
	passed caps
	grep -Eq '^VI-XEN: INFO caps: xen +ok .*xen:///system, libvirt [0-9.]+, Xen 4\.17' "$out"
}

@test "a PV guest: vi creates it, boots it to its marker, stops and destroys it" {
	passed initramfs
	lifecycle pv
}

@test "a PVH guest: the same lifecycle" {
	[[ ${VI_XEN_TYPES:-pv,pvh,hvm} == *pvh* ]] || skip "VI_XEN_TYPES leaves out pvh"
	lifecycle pvh
}

@test "an HVM guest: the same lifecycle" {
	[[ ${VI_XEN_TYPES:-pv,pvh,hvm} == *hvm* ]] || skip "VI_XEN_TYPES leaves out hvm"
	lifecycle hvm
}

@test "the session ran to its end" {
	grep -q '^VI-XEN: DONE$' "$out" || { cat "$out"; return 1; }
}
