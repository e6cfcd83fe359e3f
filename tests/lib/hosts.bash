# Test hosts on this one machine: N network namespaces joined by veth pairs to
# a private bridge, each with its own sshd, pid namespace and vi home, reached
# as root over ssh. Load after lib/common.
#
#   hosts_setup N [--libvirt]   N = 2 or 3; skips when root, ip netns or sshd
#                          (with --libvirt, libvirtd, virsh or QEMU) is missing
#   hosts_require          in setup, after hosts_setup in setup_file: skips likewise
#   hosts_teardown         kills and removes all of it; safe to call twice
#   $VI_SSH                the ssh command line vi uses (words, like GIT_SSH_COMMAND)
#   host_addr I            198.18.X.(10+I)
#   host_uri I             ssh://root@ADDR
#   host_home I            that host's vi home
#   host_ns I              its network namespace, for ip netns exec
#   host_run I CMD...      runs CMD there over ssh, each word kept as one argument
#   host_link_down I / host_link_up I   cut and restore its link
#   host_kill I            kills every process of the host, its sshd included
#
# With hosts_setup N --libvirt, each host also runs a libvirtd and a virtlogd
# of its own, which see their own /etc/libvirt, /var/lib/libvirt,
# /var/log/libvirt, /var/cache/libvirt and /run/libvirt (hosts_write_init), so
# that libvirt takes the hosts for distinct machines and migrates guests
# between them. QEMU runs there as libvirt-qemu, without cgroups.
#   host_libvirt_uri I     qemu+ssh URI of host I's libvirtd, good here and on every host
#   host_virsh I ARGS...   runs virsh against host I's libvirtd
#   host_libvirtd_kill I   kills host I's libvirtd alone, as a crash would
#   host_libvirtd_start I  starts it again; returns once it answers
#   $(host_dir I)/libvirt  its etc, lib, log and cache directories
#
# Only addresses of 198.18.0.0/15 (RFC 2544, benchmarking) are used: each
# harness takes one /24 of it, numbered HOSTS_ID (0 to 511), that no address or
# route here uses yet, the bridge owning .1. Every name starts with
# $HOSTS_PREFIX and the number, so that hosts_sweep finds what a killed run left.

HOSTS_PREFIX=vih-

hosts_net() { # the /24 of harness ID, without its last part: hosts_net ID
	echo "198.$((18 + $1 / 256)).$(($1 % 256))"
}

host_addr() { echo "$(hosts_net "$HOSTS_ID").$((10 + $1))"; }
host_uri() { echo "ssh://root@$(host_addr "$1")"; }
host_ns() { echo "$HOSTS_PREFIX$HOSTS_ID-h$1"; }
host_dir() { echo "$HOSTS_DIR/h$1"; }
host_home() { echo "$HOSTS_DIR/h$1/home"; }

host_run() {
	local addr
	addr=$(host_addr "$1")
	shift
	sh -c "$VI_SSH \"\$@\"" vi-ssh "root@$addr" "$(printf '%q ' "$@")"
}

# The root side of host I's veth: down, the host is cut off from all others.
host_link_down() { ip link set "$(host_ns "$1")" down; }
host_link_up() { ip link set "$(host_ns "$1")" up; }

# "PID STARTTIME" of a live process, nothing for a gone or zombie one.
hosts_proc_id() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	read -ra stat <<<"$stat"
	[ "${stat[0]}" = Z ] || echo "$1 ${stat[19]}"
}

# Waits (2 s at most) for the processes to be gone.
hosts_wait_gone() {
	local pid left
	for _ in $(seq 100); do
		left=
		for pid in "$@"; do
			[ -z "$(hosts_proc_id "$pid")" ] || left=1
		done
		[ -n "$left" ] || return 0
		sleep 0.02
	done
	return 1
}

# Kills every process in network namespace NS. A host's sshd is the first
# process of its pid namespace: it goes first, so the kernel ends everything
# under it and the unshare above it reaps it and exits; killed at once, they
# would leave orphans for init to reap.
hosts_kill_ns() { # NS
	local pid pids inits=() parents=()
	mapfile -t pids < <(ip netns pids "$1" 2>/dev/null)
	for pid in "${pids[@]}"; do
		awk '/^NSpid:/ { exit $NF != 1 }' "/proc/$pid/status" 2>/dev/null || continue
		inits+=("$pid")
		parents+=("$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status")")
	done
	if [ ${#inits[@]} -gt 0 ]; then
		kill -9 "${inits[@]}" 2>/dev/null || true
		hosts_wait_gone "${inits[@]}" "${parents[@]}" || true
	fi
	mapfile -t pids < <(ip netns pids "$1" 2>/dev/null)
	[ ${#pids[@]} -eq 0 ] || kill -9 "${pids[@]}" 2>/dev/null || true
	hosts_wait_gone "${pids[@]}" || true
}

host_kill() { hosts_kill_ns "$(host_ns "$1")"; }

# Removes every namespace and interface of harness ID, killing what runs there;
# the bridge goes last.
hosts_remove() { # ID
	local ns link
	for ns in $(ip netns list | awk -v p="$HOSTS_PREFIX$1-h" 'index($1, p) == 1 { print $1 }'); do
		hosts_kill_ns "$ns"
		ip netns del "$ns" 2>/dev/null || true
	done
	for link in /sys/class/net/"$HOSTS_PREFIX$1"-h*; do
		[ ! -e "$link" ] || ip link del "${link##*/}" 2>/dev/null || true
	done
	ip link del "$HOSTS_PREFIX$1-br" 2>/dev/null || true
}

# Runs a command holding the lock that makes a sweep and a claim one step each:
# no sweep sees a bridge not yet named.
hosts_locked() {
	local fd status=0
	exec {fd}>/run/vi-hosts.lock
	flock "$fd"
	"$@" || status=$?
	exec {fd}>&-
	return $status
}

# Removes what earlier runs left: harnesses whose owner (the process that set
# them up, named with its start time in the bridge's alias) is gone or whose
# directory is, and namespaces or veths of no bridge (the bridge goes last).
hosts_sweep() {
	local br id pid start dir
	for br in /sys/class/net/"$HOSTS_PREFIX"*-br; do
		[ -e "$br" ] || continue
		id=${br##*/"$HOSTS_PREFIX"}
		id=${id%-br}
		read -r pid start dir <"$br/ifalias" || true
		if [ -z "$pid" ] || [ "$(hosts_proc_id "$pid")" != "$pid $start" ] || [ ! -d "$dir" ]; then
			hosts_remove "$id"
		fi
	done
	for id in $({ ip netns list; ls /sys/class/net; } | sed -n "s/^$HOSTS_PREFIX\([0-9]*\)-h.*/\1/p" | sort -u); do
		[ -e "/sys/class/net/$HOSTS_PREFIX$id-br" ] || hosts_remove "$id"
	done
}

# Claims a free /24 by creating its bridge, which fails if another harness has
# it, and names the owner on it. Sets HOSTS_ID. Call under hosts_locked.
# Returns 2 where no bridge can be made at all.
hosts_claim() {
	local id net err
	for _ in $(seq 50); do
		id=$((RANDOM % 512))
		net=$(hosts_net "$id")
		[ -z "$(ip -4 -o addr show to "$net.0/24")" ] || continue
		[ -z "$(ip -4 route show root "$net.0/24")" ] || continue
		if err=$(ip link add name "$HOSTS_PREFIX$id-br" type bridge 2>&1); then
			HOSTS_ID=$id
			ip link set "$HOSTS_PREFIX$id-br" alias "$HOSTS_OWNER"
			return
		fi
		case $err in
		*"File exists"*) ;;
		*) echo "cannot create a bridge here: $err"; return 2 ;;
		esac
	done
	echo "hosts: no free /24 in 198.18.0.0/15 after 50 tries"
	return 1
}

# Key exchange by curve25519 alone: ssh's first choice, sntrup761, costs a
# tenth of a second more a connection, and tests make many.
hosts_write_sshd_config() { # I
	local dir
	dir=$(host_dir "$1")
	cat >"$dir/sshd_config" <<-EOF
		ListenAddress $(host_addr "$1"):22
		HostKey $dir/ssh_host_ed25519_key
		PidFile $dir/sshd.pid
		AuthorizedKeysFile $HOSTS_DIR/authorized_keys
		PermitRootLogin prohibit-password
		PubkeyAuthentication yes
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		StrictModes no
		UsePAM no
		UseDNS no
		PrintMotd no
		MaxStartups 100
		KexAlgorithms curve25519-sha256
		Subsystem sftp internal-sftp
		SetEnv "VI_SSH=$(hosts_ssh_command)"
	EOF
}

# How vi reaches the hosts, here and on each host (sshd hands it on): one key
# for all, no host keys kept.
hosts_ssh_command() {
	echo "ssh -i $HOSTS_DIR/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=5"
}

# The ssh that libvirt's qemu+ssh transport runs (its URI parameter command=):
# vi's, with the harness's key and no host keys kept. keyfile= and no_verify=1
# alone would have ssh record each host's key in root's known_hosts.
hosts_write_libvirt_ssh() {
	printf '#!/bin/sh\nexec %s "$@"\n' "$(hosts_ssh_command)" >"$HOSTS_DIR/ssh" &&
		chmod 0755 "$HOSTS_DIR/ssh"
}

host_libvirt_uri() { echo "qemu+ssh://root@$(host_addr "$1")/system?command=$HOSTS_DIR/ssh"; }

host_virsh() {
	local uri
	uri=$(host_libvirt_uri "$1")
	shift
	virsh -c "$uri" "$@"
}

# QEMU runs as libvirt-qemu there too: every directory above the hosts' must
# let it pass to reach the guests' files in a host's directory.
hosts_traversable() {
	local d=${HOSTS_DIR%/*}
	while [ -n "$d" ]; do
		chmod o+x "$d" || return
		d=${d%/*}
	done
}

# Sets KEY to VALUE in libvirt configuration FILE: libvirt takes a key's first
# setting, so any other goes.
hosts_conf_set() { # FILE KEY VALUE
	sed -i "/^[[:space:]]*$2[[:space:]]*=/d" "$1" && echo "$2 = $3" >>"$1"
}

# Host I's libvirt directories, the machine's configuration less its domains,
# networks, pools and secrets. A host UUID of its own: libvirt migrates to no
# host of its own UUID. Its address for migrations to it: libvirt would give
# its name, vm here as on every host, which resolves to 127.0.0.1. No cgroups:
# libvirt makes a guest's as /machine/qemu-ID-NAME.libvirt-qemu of the
# machine's hierarchies wherever it runs itself, every libvirtd counting IDs
# from 1, so both ends of a migration would share one, and a killed host would
# leave its guests' behind. The machine's cache of QEMU's capabilities, which
# libvirtd would otherwise take two seconds more to probe.
# Does nothing without --libvirt.
hosts_libvirt_prepare() { # I
	[ -n "$HOSTS_LIBVIRT" ] || return 0
	local lv
	lv=$(host_dir "$1")/libvirt
	mkdir -m 0755 "$lv" "$lv/lib" "$lv/log" &&
		mkdir -m 0711 "$lv/cache" &&
		cp -a /etc/libvirt "$lv/etc" &&
		rm -rf "$lv/etc/qemu" "$lv/etc/storage" "$lv/etc/secrets" &&
		hosts_conf_set "$lv/etc/libvirtd.conf" host_uuid "\"$(cat /proc/sys/kernel/random/uuid)\"" &&
		hosts_conf_set "$lv/etc/qemu.conf" migration_host "\"$(host_addr "$1")\"" &&
		hosts_conf_set "$lv/etc/qemu.conf" cgroup_controllers "[ ]" || return
	[ ! -d /var/cache/libvirt/qemu ] || cp -a /var/cache/libvirt/qemu "$lv/cache/" || return
	hosts_write_init "$1"
}

# Host I's first process, with --libvirt: in the mount namespace unshare gave
# the host (private: nothing mounted there shows elsewhere, and all of it goes
# with the host's last process), mounts the host's libvirt directories over the
# machine's and a fresh /run/libvirt as after a boot, starts virtlogd and
# libvirtd and becomes the host's sshd, whose sessions see the same. Pid files
# in the host's directory: the machine's daemons hold theirs in /run.
hosts_write_init() { # I
	local dir lv
	dir=$(host_dir "$1")
	lv=$dir/libvirt
	cat >"$dir/init" <<-EOF
		#!/bin/sh
		set -e
		mount --bind "$lv/etc" /etc/libvirt
		mount --bind "$lv/lib" /var/lib/libvirt
		mount --bind "$lv/log" /var/log/libvirt
		mount --bind "$lv/cache" /var/cache/libvirt
		mount -t tmpfs -o mode=0755 libvirt /run/libvirt
		virtlogd -d -p "$dir/virtlogd.pid"
		"$dir/libvirtd-start"
		exec /usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log"
	EOF
	# Waits until libvirtd answers, not for its socket: a killed one leaves it.
	cat >"$dir/libvirtd-start" <<-EOF
		#!/bin/sh
		libvirtd -d -p "$dir/libvirtd.pid" || exit
		for _ in \$(seq 600); do
			virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
			sleep 0.1
		done
		echo "hosts: the libvirtd of host $1 does not answer after 60 s; its log:"
		tail -n 20 /var/log/libvirt/libvirtd.log
		exit 1
	EOF
	chmod 0755 "$dir/init" "$dir/libvirtd-start"
}

# Kills host I's libvirtd with SIGKILL: its guests and virtlogd go on, and
# host_libvirtd_start finds them again. Its pid file has its pid in the host.
host_libvirtd_kill() { # I
	local pid nspid
	nspid=$(cat "$(host_dir "$1")/libvirtd.pid") || return
	for pid in $(ip netns pids "$(host_ns "$1")"); do
		[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = libvirtd ] || continue
		awk -v p="$nspid" '/^NSpid:/ { exit $NF != p }' "/proc/$pid/status" 2>/dev/null || continue
		kill -9 "$pid"
		hosts_wait_gone "$pid"
		return
	done
	echo "hosts: host $1 runs no libvirtd"
	return 1
}

host_libvirtd_start() { host_run "$1" "$(host_dir "$1")/libvirtd-start"; }

# Starts host I's sshd, the first process of a pid namespace of its own with
# its own /proc: pids a host records are its own, and killing the sshd ends
# everything the host runs. It keeps none of the test's descriptors (bats
# waits for its pipes to close). Does not wait for it to listen. With
# --libvirt, the host's init comes first, with no environment of the test's.
host_start() {
	local dir cmd
	dir=$(host_dir "$1")
	cmd=(/usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log")
	[ -z "${HOSTS_LIBVIRT:-}" ] || cmd=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$dir/init")
	(
		for fd in /proc/self/fd/*; do
			fd=${fd##*/}
			[ "$fd" -le 2 ] || eval "exec $fd>&-" 2>/dev/null
		done
		exec ip netns exec "$(host_ns "$1")" unshare --pid --fork --mount-proc "${cmd[@]}"
	) </dev/null >>"$dir/sshd.log" 2>&1 &
	echo $! >"$dir/unshare.pid"
}

# Waits (5 s at most, 90 with --libvirt, whose libvirtd starts first) until
# host I's sshd accepts a connection, or has exited.
host_wait_sshd() {
	local addr dir limit=5 end why
	[ -z "${HOSTS_LIBVIRT:-}" ] || limit=90
	why="accepts no connection after $limit s"
	end=$((SECONDS + limit))
	addr=$(host_addr "$1")
	dir=$(host_dir "$1")
	while [ $SECONDS -lt $end ]; do
		timeout 1 bash -c "</dev/tcp/$addr/22" 2>/dev/null && return 0
		if [ -z "$(hosts_proc_id "$(cat "$dir/unshare.pid")")" ]; then
			why="has exited"
			break
		fi
		sleep 0.02
	done
	echo "hosts: the sshd of host $1 ($addr) $why; its log:"
	cat "$dir/sshd.log"
	return 1
}

hosts_build() {
	local i ns net
	hosts_locked hosts_sweep
	hosts_locked hosts_claim || return
	net=$(hosts_net "$HOSTS_ID")
	ip addr add "$net.1/24" dev "$HOSTS_PREFIX$HOSTS_ID-br" &&
		ip link set "$HOSTS_PREFIX$HOSTS_ID-br" up || return 1
	ssh-keygen -q -t ed25519 -N '' -C vi-test -f "$HOSTS_DIR/id_ed25519" &&
		cp "$HOSTS_DIR/id_ed25519.pub" "$HOSTS_DIR/authorized_keys" || return 1
	if [ -n "$HOSTS_LIBVIRT" ]; then
		hosts_write_libvirt_ssh && hosts_traversable || return 1
	fi
	for i in $(seq "$HOSTS_N"); do
		ns=$(host_ns "$i")
		mkdir -m 0711 "$(host_dir "$i")" "$(host_home "$i")" &&
			ssh-keygen -q -t ed25519 -N '' -C "host $i" -f "$(host_dir "$i")/ssh_host_ed25519_key" &&
			hosts_write_sshd_config "$i" &&
			hosts_libvirt_prepare "$i" &&
			ip netns add "$ns" &&
			ip link add name "$ns" master "$HOSTS_PREFIX$HOSTS_ID-br" up \
				type veth peer name eth0 netns "$ns" &&
			ip -n "$ns" addr add "$(host_addr "$i")/24" dev eth0 &&
			ip -n "$ns" link set eth0 up &&
			ip -n "$ns" link set lo up || return 1
		host_start "$i"
	done
	for i in $(seq "$HOSTS_N"); do
		host_wait_sshd "$i" || return 1
	done
}

# Why the hosts cannot be made here, if they cannot.
hosts_missing() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "the test hosts need root"
	elif [ ! -x /usr/sbin/sshd ]; then
		echo "no /usr/sbin/sshd (openssh-server, scripts/setup installs it)"
	elif ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
		echo "no ssh or ssh-keygen (openssh-client, scripts/setup installs it)"
	elif ! command -v unshare >/dev/null; then
		echo "no unshare (util-linux)"
	elif ! ip netns list >/dev/null 2>&1; then
		echo "no ip netns here"
	elif [ -n "$HOSTS_LIBVIRT" ]; then
		hosts_missing_libvirt
	fi
}

hosts_missing_libvirt() {
	local c
	for c in libvirtd virtlogd virsh virt-ssh-helper qemu-system-x86_64; do
		if ! command -v "$c" >/dev/null; then
			echo "no $c (scripts/setup installs libvirt and QEMU)"
			return
		fi
	done
}

# Skips the test; in setup_file, where bats 1.8 cannot skip, leaves the reason
# in HOSTS_SKIP for hosts_require.
hosts_skip() {
	[ -z "${BATS_TEST_NAME:-}" ] || skip "$1"
	export HOSTS_SKIP=$1
}

# For setup when hosts_setup ran in setup_file: skips where it could not.
hosts_require() {
	[ -z "${HOSTS_SKIP:-}" ] || skip "$HOSTS_SKIP"
}

hosts_setup() { # N [--libvirt]
	local why status=0
	export HOSTS_LIBVIRT=
	case ${2:-} in
	'') ;;
	--libvirt) HOSTS_LIBVIRT=1 ;;
	*) echo "hosts_setup: unknown option '$2'"; return 1 ;;
	esac
	why=$(hosts_missing)
	if [ -n "$why" ]; then
		hosts_skip "$why"
		return 0
	fi

	export HOSTS_N=$1
	export HOSTS_DIR=${BATS_TEST_TMPDIR:-$BATS_FILE_TMPDIR}/hosts
	# $BASHPID here, not in the $(...) below: this process owns the hosts.
	local owner=$BASHPID
	HOSTS_OWNER="$(hosts_proc_id "$owner") $HOSTS_DIR"
	export HOSTS_OWNER
	mkdir -m 0711 "$HOSTS_DIR"
	[ -d /run/sshd ] || mkdir -m 0755 /run/sshd
	hosts_build || status=$?
	if [ $status -ne 0 ]; then
		hosts_teardown
		[ $status -eq 2 ] || return 1
		hosts_skip "cannot create a bridge here"
		return 0
	fi
	export HOSTS_ID
	VI_SSH=$(hosts_ssh_command)
	export VI_SSH
}

# Does nothing where the bridge is gone or another harness's (this one was
# torn down already, maybe in another process, and its number taken again).
hosts_teardown() {
	[ -n "${HOSTS_ID:-}" ] || return 0
	local owner
	owner=$(cat "/sys/class/net/$HOSTS_PREFIX$HOSTS_ID-br/ifalias" 2>/dev/null) || true
	[ "$owner" = "$HOSTS_OWNER" ] || return 0
	hosts_remove "$HOSTS_ID"
	unset HOSTS_ID
}
