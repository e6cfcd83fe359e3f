/* Port forwards of "user" NICs, as the host sees them: free ports, ports in
 * use, and the forwards a machine gets before each start. */
#ifndef VI_FORWARD_H
#define VI_FORWARD_H

#include <stdbool.h>

#include "vm.h"

/* The SSH port every "user" NIC forwards from a free host port by default. */
#define VI_SSH_GUEST_PORT 22

/* A port the kernel says is free now on addr (an ephemeral one). */
int vi_port_free(const char *addr, int proto, unsigned *port);
/* 0 when addr:port can be bound now; VI_ESTATE "host port N is in use"
 * (the address named unless it is 127.0.0.1) otherwise. */
int vi_port_check(const char *addr, int proto, unsigned port);

/* The first "user" NIC of vm, or NULL. */
struct vi_vm_nic *vi_vm_user_nic(const struct vi_vm *vm);

/* The first "user" NIC's forward of the guest's SSH port, or NULL. */
struct vi_vm_forward *vi_vm_ssh_forward(const struct vi_vm *vm);

/* Before a start: every automatic forward whose port is 0 or taken gets a
 * free one (*changed set: the caller saves vm.yaml), and every other
 * forward's port must be free (VI_ESTATE naming it). Two forwards of the VM
 * on one host port are refused as well. */
int vi_forwards_prepare(struct vi_vm *vm, bool *changed);

#endif
