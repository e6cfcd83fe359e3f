#!/usr/bin/env bats
# A way into real guests: tiny is built once, then machines made from it on
# hv-qemu get user networking, an SSH forward, their seed, and are reached by
# vi exec, vi ssh, vi cp, forwards and the ssh line a CI command is given.

load lib/common
load lib/template

setup_file() {
	# A failed build is reported by each test's setup, with vi's words.
	tiny_store || true
}

setup() {
	unset VI_PLUGIN_DIR VISUAL EDITOR
	need_hv_qemu
	grep -q "^built template 'tiny'\|up to date" "$BATS_FILE_TMPDIR/tiny.out" ||
		{ cat "$BATS_FILE_TMPDIR/tiny.out"; false; }
	cd "$BATS_TEST_TMPDIR"
	made=()
}

teardown() {
	for n in "${made[@]}"; do vi -q destroy --force "$n" 2>/dev/null || true; done
	[ -z "${holder:-}" ] || kill "$holder" 2>/dev/null || true
}


teardown_file() {
	[ ! -e "$BATS_FILE_TMPDIR/shared" ] || vi -q destroy --force "$(cat "$BATS_FILE_TMPDIR/shared")" || true
}

# The file's machine for the tests that change nothing of it, in $n: made by the first
# that needs it, a boot fewer for each other one.
shared() {
	if [ ! -e "$BATS_FILE_TMPDIR/shared" ]; then
		vi -q create --template tiny --hv qemu --wait-ready --timeout 240 "web$$"
		echo "web$$" >"$BATS_FILE_TMPDIR/shared"
	fi
	n=$(cat "$BATS_FILE_TMPDIR/shared")
}

# create NAME [options...]: a ready machine from tiny on hv-qemu.
create() {
	local name=$1
	shift
	made+=("$name")
	vi -q create --template tiny --hv qemu --wait-ready --timeout 240 "$@" "$name"
}

@test "tiny: ready means SSH answers; vi exec and vi ssh work with no flag and no prompt" {
	shared
	run -0 vi exec "$n" -- uname -n
	[ "$output" = "$n" ]
	run -0 vi ssh "$n" -- id -un
	[ "$output" = root ]
	# Arguments stay whole through vi exec; the exit status is the command's.
	run -0 vi exec "$n" -- sh -c 'echo "$1|$2"' sh 'a b' "it's"
	[ "$output" = "a b|it's" ]
	run -3 vi exec "$n" -- sh -c 'exit 3'
	# The host key vi recorded is the one the guest offers.
	grep -q "^$n ssh-ed25519 " "$VI_HOME/vms/$n/known_hosts"
	[ "$(vi show --json "$n" | jq -r '.vm.nics[0].address')" = 10.0.2.15 ]
	run -0 vi list --wide
	[[ "$output" == *"$n"*"10.0.2.15"*"127.0.0.1:"* ]]
}

@test "vi cp copies files and directories both ways" {
	shared
	printf 'line one\nline two\n' >f.txt
	run -0 vi cp f.txt "$n:/tmp/f.txt"
	[ "$(vi exec "$n" -- cat /tmp/f.txt)" = "$(cat f.txt)" ]
	run -0 vi cp "$n:/etc/hostname" got
	[ "$(cat got)" = "$n" ]
	mkdir -p d/sub && echo deep >d/sub/x
	run -0 vi cp -r d "$n:/tmp"
	[ "$(vi exec "$n" -- cat /tmp/d/sub/x)" = deep ]
	run -0 vi cp -r "$n:/tmp/d" back
	[ "$(cat back/sub/x)" = deep ]
	run -1 vi cp "$n:/nonexistent" out
	[ ! -e out ]
}

@test "--forward 8080:80 style: the host reaches a web server in the guest, and vi forward adds one live" {
	n=fw$$
	p=$(free_port)
	cat >ud.yaml <<-'EOF'
		#cloud-config
		runcmd:
		  - mkdir -p /srv/www
		  - echo hello from the guest >/srv/www/index.html
		  - httpd -p 80 -h /srv/www
	EOF
	create "$n" --forward "$p:80" --user-data ud.yaml
	run -0 curl -sS --max-time 20 "http://localhost:$p/"
	[ "$output" = "hello from the guest" ]
	q=$(free_port)
	run -0 vi forward add "$n" "$q:80"
	run -0 curl -sS --max-time 20 "http://127.0.0.1:$q/"
	[ "$output" = "hello from the guest" ]
	run -0 vi forward rm "$n" "$q"
	run ! curl -sS --max-time 5 "http://127.0.0.1:$q/"
}

@test "a forward to a host port in use: exit 5 naming the port, and no machine is left" {
	p=$(free_port)
	python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(); time.sleep(60)' "$p" &
	holder=$!
	sleep 1
	made+=(busy$$)
	run -5 vi create --template tiny --hv qemu --forward "$p:80" --start busy$$
	[ "$output" = "vi: error: host port $p is in use" ]
	run -3 vi show busy$$
}

@test "--rm -- CMD: the command gets VI_IP, VI_SSH_PORT, VI_SSH_KEY, VI_SSH_USER and VI_SSH" {
	n=ci$$
	made+=("$n")
	run -0 vi -q create --template tiny --hv qemu --rm --wait-ready --timeout 240 "$n" -- \
		sh -c 'ssh -i "$VI_SSH_KEY" -p "$VI_SSH_PORT" -o StrictHostKeyChecking=no \
			-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "$VI_SSH_USER@$VI_IP" uname -n &&
			$VI_SSH cat /etc/hostname'
	[ "${lines[0]}" = "$n" ]
	[ "${lines[1]}" = "$n" ]
	run -3 vi show "$n"
}

@test "another user and key from the same golden image: no rebuild, and that user logs in" {
	a=one$$
	b=alice$$
	create "$a"
	ssh-keygen -q -t ed25519 -N '' -C alice -f alice
	run -0 vi create --template tiny --hv qemu --wait-ready --timeout 240 --user alice \
		--ssh-key alice.pub "$b"
	made+=("$b")
	[[ "$output" != *"built template"* ]]
	[ "$(vi show --json "$a" | jq -r .vm.template_digest)" = \
		"$(vi show --json "$b" | jq -r .vm.template_digest)" ]
	run -0 vi exec "$b" -- id -un
	[ "$output" = alice ]
	port=$(vi forward list --json "$b" | jq -r '.forwards[] | select(.guest_port == 22) | .host_port')
	printf '%s\n' "[127.0.0.1]:$port $(cut -d' ' -f2- "$VI_HOME/vms/$b/known_hosts")" >kh
	run -0 ssh -i alice -p "$port" -o UserKnownHostsFile=kh -o StrictHostKeyChecking=yes \
		-o BatchMode=yes alice@127.0.0.1 id -un
	[ "$output" = alice ]
}

@test "--disk-size grows the root partition and its file system at first boot" {
	n=big$$
	create "$n" --disk-size 256M
	kb=$(vi exec "$n" -- df -k / | awk 'NR == 2 { print $2 }')
	[ "$kb" -gt 200000 ]
}

@test "a clone of a running machine answers with its own name and host key" {
	shared
	made+=("c$$")
	vi -q clone --start "$n" "c$$"
	for _ in $(seq 120); do
		vi exec "c$$" -- true 2>/dev/null && break
		sleep 2
	done
	run -0 vi exec "c$$" -- uname -n
	[ "$output" = "c$$" ]
	run -0 vi exec "$n" -- uname -n
	[ "$output" = "$n" ]
}

@test "tiny: a snapshot with memory brings file A back without B, no reboot, and the kept state brings B back" {
	n=snap$$
	create "$n"
	vi exec "$n" -- sh -c 'echo a >/root/A && sync'
	up_at_snapshot=$(vi exec "$n" -- cut -d. -f1 /proc/uptime)
	run -0 vi snapshot create "$n" s1
	vi exec "$n" -- sh -c 'echo b >/root/B && sync'
	sleep 2
	run -0 vi snapshot checkout "$n" s1
	[[ $output =~ as\ snapshot\ \'(s[0-9a-f]{6})\' ]]
	kept=${BASH_REMATCH[1]}
	[[ $output == *"VM '$n' is at snapshot 's1', running" ]]
	run -0 vi exec "$n" -- cat /root/A
	[ "$output" = a ]
	run -1 vi exec "$n" -- test -e /root/B
	# It went on from the snapshot's instant: no boot since then.
	up=$(vi exec "$n" -- cut -d. -f1 /proc/uptime)
	[ "$up" -ge "$up_at_snapshot" ]
	run -0 vi snapshot checkout "$n" "$kept"
	run -0 vi exec "$n" -- cat /root/B
	[ "$output" = b ]
	vi -q stop --force "$n"
	for f in "$VI_HOME/vms/$n"/disks/*.qcow2 "$VI_HOME"/images/layers/*.qcow2; do
		[ -e "$f" ] || continue
		qemu-img check -q "$f"
	done
}
