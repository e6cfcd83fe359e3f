/* A machine: a VM's definition from the store together with its backend and
 * the backend's view of it. Everything a verb needs to act on one VM.
 * vi_machine_release() frees what vi_machine_open() made. */
#ifndef VI_MACHINE_H
#define VI_MACHINE_H

#include "hv.h"
#include "store.h"
#include "vm.h"

struct vi_machine {
	struct vi_vm def;
	struct vi_vm_hv view;
	struct vi_hv *hv; /* NULL when its backend is not installed or not usable */
	char *hv_problem; /* why hv is NULL: "backend 'x' is not installed" or
			     "backend 'x' is not usable[ at 'URI']: REASON" */
	char *dir;
};

/* Loads VM name. uri overrides the VM's recorded connection. When
 * need_backend, a missing or unusable backend is an error; otherwise
 * m->hv is left NULL in that case, and m->hv_problem says why. */
int vi_machine_open(const struct vi_store *s, struct vi_hv_set *plugins, const char *name,
		    const char *uri, bool need_backend, struct vi_machine *m);
void vi_machine_release(struct vi_machine *m);

/* The backend's state; VI_HV_UNKNOWN without a backend or on error. */
int vi_machine_state(struct vi_machine *m, struct vi_hv_state *st);

/* The IPv4 address the guest has on NIC i, as its backend reports it (a
 * "user" NIC's is the one user networking hands out when the backend cannot
 * say); NULL unless state (the VM's, as just read) is running, or when
 * unknown. The caller frees it. */
char *vi_machine_nic_address(struct vi_machine *m, int state, size_t i);

#endif
