/* The VMM's control socket: a Unix stream socket speaking length-prefixed JSON (a 4-byte
 * big-endian length, then one JSON object), one request and one reply at a time.
 *
 *   {"cmd":"status"}            -> {"ok":true,"state":"running"|"paused","pid":N,
 *                                   "started_at":T,"backend":"svm", stats as below}
 *   {"cmd":"stats"}             -> {"ok":true,"vcpus":N,"exits":N,"cpu_time_ns":N,"memory":N}
 *   {"cmd":"pause"|"resume"}    -> {"ok":true,"state":...}
 *   {"cmd":"stop","force":B}    -> {"ok":true}; graceful presses the power button (or
 *                                   Ctrl-Alt-Del), force ends the VM; the connection
 *                                   closes when the VMM is gone
 *   {"cmd":"console"}           -> {"ok":true}, then raw bytes: recent and new guest
 *                                   output one way, keyboard input to COM1 the other
 *   {"cmd":"switch_disks","overlays":[P|null,...]}
 *                               -> {"ok":true}; one entry per disk, in order: disk i moves
 *                                   onto the qcow2 overlay at absolute path P, backed by
 *                                   the image it uses now; null leaves it. All listed
 *                                   disks move at one instant or none does.
 *   {"cmd":"save","path":P,"live":B}
 *                               -> {"ok":true,"written":N} once the job is done: the VM
 *                                   paused, its whole state (lib/state.h) written to a new
 *                                   file at absolute path P (or a FIFO there) and synced;
 *                                   then the VM stops, or with live it goes on (a VM paused
 *                                   before stays paused). On failure P is removed and the
 *                                   VM goes on as it was.
 *   {"cmd":"migrate","bandwidth":B,"downtime_ms":D,"timeout_s":T,"converge":C,
 *    "shared_disks":S}, with a connected stream to the destination passed as SCM_RIGHTS
 *    on the request's first bytes
 *                               -> once the job is done: {"ok":true, and the outcome:
 *                                   "total_ms","downtime_ms","iteration","sent",
 *                                   "disk_bytes"...}: the guest runs on the destination and
 *                                   this VMM ends; or {"ok":false,"error":E,"unconfirmed":B}:
 *                                   the VM runs on here, or stays paused when unconfirmed
 *                                   (vmm_migrate_send() in vmm.h). While it runs, status's
 *                                   job adds "iteration","sent","remaining","dirty_rate",
 *                                   "bandwidth","disk_bytes","throttle","phase".
 *   {"cmd":"dirty_rate","ms":N} -> {"ok":true,"bytes_per_s":R}: what the guest and the
 *                                   devices dirty, measured over N ms
 *   {"cmd":"set_memory","bytes":N}
 *                               -> {"ok":true,"boot":B,"max":M,"requested_size":R,
 *                                   "plugged_size":P,"balloon_bytes":L,"balloon_actual":A}:
 *                                   the guest's memory made N bytes in all (vmm_set_memory()):
 *                                   virtio-mem asked for R (P plugged so far), the balloon
 *                                   for L (A held so far). N of 0 or past M fails with
 *                                   "code" VI_EUSAGE, below B without a balloon with
 *                                   VI_EUNSUPPORTED.
 * Commands run one after the other, but a long job (save, migrate) runs on a worker thread: its
 * connection waits for the reply, the others are answered meanwhile, and status then
 * adds "job":{"name":"save","path":P,"done":D,"total":T,"written":N} (guest memory bytes
 * looked at of all there are, file bytes written). While a job runs, pause, resume,
 * switch_disks and another save are refused ("cannot 'save' while the 'save' job runs");
 * a forced stop or the end of the VM cancels it.
 * Failures: {"ok":false,"error":"message"}.
 */
#ifndef VI_VMM_CONTROL_H
#define VI_VMM_CONTROL_H

#include <stdint.h>

#include "vmm/vmm.h"

#define VMM_CONTROL_MAX_MESSAGE (1u << 20)

struct vmm_control;

/* Listens on `path` (mode 0600, a stale socket replaced) from vm's event loop. `backend`
 * names the plugin in status replies. The caller owns *out: vmm_control_close(). */
int vmm_control_open(struct vmm *vm, const char *path, const char *backend,
		     struct vmm_control **out);
/* Removes the socket, ends a running job, frees the VM's devices (vmm_release_devices()),
 * then closes every connection: a client waiting for the end of the VM sees EOF only when
 * the VM is gone. After vmm_wait(). */
void vmm_control_close(struct vmm_control *ctl);

/* Client side. Connects to `path`: -VI_ESTATE when nobody listens there. */
int vmm_control_connect(const char *path, int *fd);
/* Sends {"cmd":cmd, ...args} (args may be NULL and is consumed) and reads the reply;
 * an {"ok":false} reply becomes -VI_EFAIL with its message. The caller owns *reply
 * (json_object_put), which may be NULL when it is not wanted. */
int vmm_control_call(int fd, const char *cmd, struct json_object *args,
		     struct json_object **reply);

/* Framing, shared by both sides: 0, or -VI_EFAIL (-VI_ESTATE on EOF before a frame). */
int vmm_control_send(int fd, struct json_object *msg);
/* The same, passing the descriptor `pass` along (SCM_RIGHTS). */
int vmm_control_send_fd(int fd, struct json_object *msg, int pass);
int vmm_control_recv(int fd, struct json_object **msg);

#endif
