#!/usr/bin/env bats
# vi migrate of QEMU guests between libvirt hosts: the test hosts of
# tests/lib/hosts.bash, each with a libvirtd of its own (hosts_setup 2
# --libvirt), guests made from `tiny` on h1 and moved to h2, all driven from
# here with vi --host. Seven tiny guests boot under TCG on the hosts: about
# four minutes on two cores, make check-slow only.

load ../lib/common
load ../lib/hosts
load ../lib/template

setup_file() {
	# tiny built once for the run; each host's store gets its own copy of
	# the image only as vi puts it there.
	tiny_store
	export TINY_IMAGES=$VI_HOME/images
	hosts_setup 2 --libvirt
}

teardown_file() {
	hosts_teardown
}

setup() {
	hosts_require
	need_hv_qemu
	cd "$BATS_TEST_TMPDIR"
	export VI_HOME=$BATS_TEST_TMPDIR/home
	for i in 1 2; do
		vi -q host add "h$i" "$(host_uri "$i")" --home "$(host_home "$i")" \
			--vi "$VI_BUILD/vi" --libvirt "$(host_libvirt_uri "$i")"
	done
	# h1 moves its VMs to h2 by its own inventory.
	vi -q --host h1 host rm h2 2>/dev/null || true
	vi -q --host h1 host add h2 "$(host_uri 2)" --home "$(host_home 2)" --vi "$VI_BUILD/vi" \
		--libvirt "$(host_libvirt_uri 2)"
	# The source has tiny's golden image; the destination has nothing yet.
	[ -e "$(host_home 1)/images" ] || cp -al "$TINY_IMAGES" "$(host_home 1)/"
}

teardown() {
	# A libvirtd a test killed comes back for the next.
	host_run 2 virsh -c qemu:///system version >/dev/null 2>&1 || host_libvirtd_start 2
	for h in h1 h2; do
		for vm in $(vi --host "$h" list --json 2>/dev/null | jq -r '.vms[].name'); do
			vi -q --host "$h" destroy --force "$vm" || true
		done
	done
	rm -rf "$(host_home 2)/images"
}

# A running machine from tiny on h1, ready: make NAME
make() {
	vi -q --host h1 create --hv qemu --template tiny --wait-ready --timeout 240 "$1"
}

# What the guest runs, through vi on host H: guest H NAME CMD
guest() {
	local h=$1 n=$2
	shift 2
	vi --host "$h" exec "$n" -- sh -c "$*"
}

log_there() { cat "$(host_home "$1")/vms/$2/run/console.log"; }

@test "a running guest moves live: its console, uptime and files go on there, and nothing of it stays" {
	make mv1
	guest h1 mv1 'echo kept-across >/root/note && sync'
	guest h1 mv1 'echo before-the-move >/dev/console'
	up1=$(guest h1 mv1 'cut -d. -f1 /proc/uptime')
	run -0 vi --host h1 migrate mv1 h2
	[[ "$output" == "moved VM 'mv1' to host 'h2', running: "*" paused "*" ms, "*" sent ("*" of files, "*" of disks) in "*" iterations" ]]
	# There: running, the same guest.
	[ "$(vi --host h2 show --json mv1 | jq -r .vm.state)" = running ]
	[ "$(guest h2 mv1 'cat /root/note')" = kept-across ]
	up2=$(guest h2 mv1 'cut -d. -f1 /proc/uptime')
	[ "$up2" -ge "$up1" ]
	guest h2 mv1 'echo after-the-move >/dev/console'
	for _ in $(seq 50); do
		log_there 2 mv1 | grep -q after-the-move && break
		sleep 0.1
	done
	# One log: what the guest printed here, then there.
	log_there 2 mv1 | grep -q vi-guest-ready
	log_there 2 mv1 | grep -q before-the-move
	log_there 2 mv1 | grep -q after-the-move
	# libvirt there keeps it (persistent); here no domain and no record.
	host_virsh 2 dominfo mv1 | grep -Eq '^Persistent: +yes'
	run host_virsh 1 dominfo mv1
	[ "$status" -ne 0 ]
	[ -z "$(vi --host h1 list --json | jq -r '.vms[].name')" ]
	[ ! -e "$(host_home 1)/vms/mv1" ]
	# Its disk there is an overlay on the golden image in that store.
	disk=$(vi --host h2 show --json mv1 | jq -r '.vm.disks[0].path')
	[[ $disk == "$(host_home 2)/"* ]]
	qemu-img info -U "$disk" | grep -q "backing file: $(host_home 2)/images/"
	# It stops and starts there like any VM of that store.
	vi -q --host h2 stop --force mv1
	qemu-img check -q "$disk"
}

@test "the golden image goes to a host once: a second VM from tiny sends only its overlay" {
	make ga
	make gb
	digest=$(vi --host h1 show --json ga | jq -r .vm.template_digest)
	run -0 vi --host h1 migrate --check ga h2
	[[ "$output" == *"golden image included"* ]]
	run -0 vi --host h1 migrate --json ga h2
	first=$(jq -r .file_bytes <<<"${lines[-1]}")
	[ -d "$(host_home 2)/images/$digest" ]
	run -0 vi --host h1 migrate --check gb h2
	[[ "$output" == *"golden image there already"* ]]
	run -0 vi --host h1 migrate --json gb h2
	report=${lines[-1]}
	second=$(jq -r .file_bytes <<<"$report")
	image=$(cat "$(host_home 2)/images/$digest"/* | wc -c)
	echo "files sent: $first, then $second; the image: $image"
	[ "$first" -gt $((image * 9 / 10)) ]
	[ "$second" -lt $((image / 10)) ]
	# The overlay went by libvirt's copy of the disk's top layer.
	[ "$(jq -r .disk_bytes <<<"$report")" -gt 0 ]
	[ "$(jq -r .bytes <<<"$report")" -gt "$second" ]
	[ "$(vi --host h2 list --json | jq -r '[.vms[] | "\(.name) \(.state)"] | join(",")')" = "ga running,gb running" ]
}

@test "--check asks libvirt there: it answers, and compares the guest's CPU" {
	make ck
	run -0 vi --host h1 migrate --check ck h2
	grep -Eq "^ok +libvirt +libvirt answers at qemu\+ssh://root@$(host_addr 2)/system" <<<"$output"
	grep -Eq "^ok +cpu +the (host there runs the guest's CPU|guest's CPU is the host's there)" <<<"$output"
	grep -Eq "^ok +memory +512.0M needed" <<<"$output"
	# A libvirt URI that answers nothing: the check says so, exit 5.
	vi -q --host h1 host rm h9 2>/dev/null || true
	vi -q --host h1 host add h9 "$(host_uri 2)" --home "$(host_home 2)" --vi "$VI_BUILD/vi" \
		--libvirt "qemu+ssh://root@$(host_addr 2):1/system?command=$HOSTS_DIR/ssh"
	run -5 vi --host h1 migrate --check ck h9
	[[ "$output" == *"libvirt there does not answer"* ]]
	[ "$(vi --host h1 show --json ck | jq -r .vm.state)" = running ]
}

@test "--timeout, and libvirtd there killed midway: the guest runs on at the source, nothing is left there" {
	make kd
	guest h1 kd 'echo still-here >/root/mark && sync'
	# A move that cannot end in time is given up, the guest running here.
	run -6 vi --host h1 migrate --timeout 1 --bandwidth 1M kd h2
	[ "$output" = "vi: error: the migration did not end within 1 s" ]
	[ "$(vi --host h1 show --json kd | jq -r .vm.state)" = running ]
	[ -z "$(host_virsh 2 list --all --name | grep kd)" ]
	[ ! -e "$(host_home 2)/vms/kd" ]
	# Slow enough to be caught in the middle.
	vi --host h1 migrate --bandwidth 2M kd h2 >out 2>&1 &
	pid=$!
	for _ in $(seq 300); do
		[ -n "$(host_virsh 2 list --name 2>/dev/null | grep kd)" ] && break
		sleep 0.1
	done
	host_libvirtd_kill 2
	rc=0
	wait "$pid" || rc=$?
	cat out
	[ "$rc" -eq 1 ]
	[ "$(wc -l <out)" -eq 1 ]
	grep -q "^vi: error: cannot move 'kd' to 'qemu+ssh://" out
	# Here: running, its record and its disk as they were.
	[ "$(vi --host h1 show --json kd | jq -r .vm.state)" = running ]
	[ "$(guest h1 kd 'cat /root/mark')" = still-here ]
	# There, once libvirtd is back: no domain, no record.
	host_libvirtd_start 2
	for _ in $(seq 100); do
		[ -z "$(host_virsh 2 list --all --name | grep kd)" ] && break
		sleep 0.1
	done
	[ -z "$(host_virsh 2 list --all --name | grep kd)" ]
	[ ! -e "$(host_home 2)/vms/kd" ]
	[ -z "$(vi --host h2 list --json | jq -r '.vms[].name')" ]
}

@test "a stopped guest moves offline and is defined there; --tunnel and unknown hosts are refused" {
	make off
	run -2 vi --host h1 migrate --tunnel off h2
	[ "$output" = "vi: error: --tunnel is for vi's own VMM: libvirt carries backend 'qemu' guests itself" ]
	vi -q --host h1 stop off
	run -0 vi --host h1 migrate --offline off h2
	[[ "$output" == "moved VM 'off' to host 'h2' (stopped): "* ]]
	host_virsh 2 dominfo off | grep -Eq '^State: +shut off'
	run host_virsh 1 dominfo off
	[ "$status" -ne 0 ]
	run -0 vi --host h2 start off
	[ "$(vi --host h2 show --json off | jq -r .vm.state)" = running ]
	run -3 vi --host h2 migrate off nosuch
	[ "$output" = "vi: error: unknown host 'nosuch' (see 'vi host list')" ]
}
