# Helpers the benchmark scripts share: a clock, medians and ratios, and
# removing what a run defined in libvirt. Sourced by bench/*/run.

# Runs a command and appends its wall time in microseconds to the array
# named by $1. The clock is bash's own: no fork around the command.
timed() {
	local -n _times=$1
	shift
	local t0=${EPOCHREALTIME//[!0-9]/}
	"$@"
	local t1=${EPOCHREALTIME//[!0-9]/}
	_times+=("$((t1 - t0))")
}

# The median of the array named by $1.
median() {
	local -n _values=$1
	printf '%s\n' "${_values[@]}" | sort -n | awk '{ v[NR] = $1 }
		END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Microseconds as seconds or milliseconds, and the ratio $2/$1 ("2.1x").
seconds() { awk -v t="$1" 'BEGIN { printf "%.3f s", t / 1e6 }'; }
millis() { awk -v t="$1" 'BEGIN { printf "%.1f ms", t / 1e3 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", b / a }'; }

# Names $1-1 .. $1-$2, as `vi clone --count` makes them.
counted() {
	local i
	for ((i = 1; i <= $2; i++)); do
		echo "$1-$i"
	done
}

# Undefines the domains named on $1 (a libvirt URI) in one virsh; $2 is
# passed to each undefine (e.g. --remove-all-storage, or "").
undefine() {
	local uri=$1 flags=$2 cmds= n
	shift 2
	for n; do
		cmds+="undefine $n $flags; "
	done
	[ -z "$cmds" ] || virsh -q -c "$uri" "$cmds" >/dev/null
}

# Removes from libvirt ($1) everything a run left there: every domain whose
# name starts with $2, and the storage pool virt-clone makes for a directory
# it copies disks into, if that directory is $3.
libvirt_clean() {
	local uri=$1 prefix=$2 dir=$3 n p
	local -a mine=()
	for n in $(virsh -q -c "$uri" list --all --name); do
		[[ $n == "$prefix"* ]] && mine+=("$n")
	done
	if [ ${#mine[@]} -gt 0 ]; then
		virsh -q -c "$uri" "$(printf 'destroy %s; ' "${mine[@]}")" >/dev/null 2>&1
		undefine "$uri" "" "${mine[@]}" 2>/dev/null
	fi
	for p in $(virsh -q -c "$uri" pool-list --all --name); do
		if virsh -q -c "$uri" pool-dumpxml "$p" | grep -q "<path>$dir</path>"; then
			virsh -q -c "$uri" pool-destroy "$p" >/dev/null 2>&1
			virsh -q -c "$uri" pool-undefine "$p" >/dev/null
		fi
	done
}

# Microseconds since boot in which every runnable task waited for the disk, and
# in which at least one waited for a CPU (the kernel's pressure stall
# information), or nothing where it is missing.
io_stalled() { sed -n 's/^full .*total=//p' /proc/pressure/io 2>/dev/null || true; }
cpu_waited() { sed -n 's/^some .*total=//p' /proc/pressure/cpu 2>/dev/null || true; }

# Prints the share of the time since $1 (a timestamp in microseconds) that the
# stall counted by $2 (io_stalled or cpu_waited; $3 its count then) lasted, ours
# and other work's, in the sentence $4 at its %s.
report_stall() {
	local now=${EPOCHREALTIME//[!0-9]/} count
	count=$($2)
	[ -n "$3" ] && [ -n "$count" ] || return 0
	# shellcheck disable=SC2059
	printf "$4\n" "$(awk -v s=$((count - $3)) -v t=$((now - $1)) 'BEGIN { printf "%.0f%%", 100 * s / t }')"
}
report_io() {
	report_stall "$1" io_stalled "$2" \
		"the disk held up all busy tasks, ours and others, %s of the run (/proc/pressure/io)"
}
report_cpu() {
	report_stall "$1" cpu_waited "$2" \
		"a task, ours or others, waited for a CPU %s of the run (/proc/pressure/cpu)"
}
