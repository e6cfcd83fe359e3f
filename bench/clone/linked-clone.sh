#!/usr/bin/env bash
# Linked clones of a stopped libvirt domain, by hand: a qcow2 overlay on the
# domain's disk and a copy of its XML with a new name, UUID and MAC and the
# disk pointed at the overlay. The work `vi clone` does for a VM of hv qemu,
# written the way a user would; bench/clone/run times the two.
#
# usage: linked-clone.sh [-c URI] [-n COUNT] [-b BASE] [-d DIR] [-1] SRC NEW
#   -c URI    libvirt connection (default $LIBVIRT_DEFAULT_URI, else qemu:///system)
#   -n COUNT  make NEW-1 .. NEW-COUNT, as `vi clone --count`
#   -b BASE   the overlays' backing file (default: the source's disk), e.g.
#             the golden image under a source that is itself an overlay
#   -d DIR    where the overlays go (default: beside the source's disk)
#   -1        one virsh for all the defines instead of one per clone
#
# The source has one disk, a qcow2 file. libvirt makes a new UUID and MAC for those
# left out of the XML, as it does for any domain defined without them.
set -euo pipefail

uri=${LIBVIRT_DEFAULT_URI:-qemu:///system}
count= base= dir= batch=
usage() {
	echo "usage: linked-clone.sh [-c URI] [-n COUNT] [-b BASE] [-d DIR] [-1] SRC NEW" >&2
	exit 2
}
while getopts c:n:b:d:1 opt; do
	case $opt in
	c) uri=$OPTARG ;;
	n) count=$OPTARG ;;
	b) base=$OPTARG ;;
	d) dir=$OPTARG ;;
	1) batch=1 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || usage
src=$1 new=$2

xml=$(virsh -q -c "$uri" dumpxml "$src")
disk=$(sed -n "s/.*<source file='\([^']*\)'.*/\1/p" <<<"$xml")
if [ -z "$disk" ] || [ "$(wc -l <<<"$disk")" -ne 1 ]; then
	echo "linked-clone.sh: '$src' must have exactly one file disk" >&2
	exit 1
fi
base=${base:-$disk}
dir=${dir:-$(dirname "$disk")}

# The clone's XML on stdout. The empty <backingStore/> of the source would
# tell libvirt that the overlay has no backing file; the console log is the
# source's own.
clone_xml() { # name, overlay
	sed -e "s|<name>.*</name>|<name>$1</name>|" \
		-e "/<uuid>/d" -e "/<mac address=/d" \
		-e "s|<source file='[^']*'/>|<source file='$2'/>|" \
		-e "/<backingStore\/>/d" -e "/<log file=/d" <<<"$xml"
}

names=()
if [ -n "$count" ]; then
	for ((i = 1; i <= count; i++)); do
		names+=("$new-$i")
	done
else
	names=("$new")
fi

defines=
for name in "${names[@]}"; do
	overlay=$dir/$name.qcow2
	qemu-img create -q -f qcow2 -b "$base" -F qcow2 "$overlay"
	if [ -n "$batch" ]; then
		clone_xml "$name" "$overlay" >"$dir/$name.xml"
		defines+="define $dir/$name.xml; "
	else
		clone_xml "$name" "$overlay" | virsh -q -c "$uri" define /dev/stdin >/dev/null
	fi
done
if [ -n "$batch" ]; then
	virsh -q -c "$uri" "$defines" >/dev/null
	for name in "${names[@]}"; do
		rm -f "$dir/$name.xml"
	done
fi
