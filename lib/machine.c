/* A VM's definition bound to its backend. */
#include "machine.h"
#include "error.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vi_machine_open(const struct vi_store *s, struct vi_hv_set *plugins, const char *name,
		    const char *uri, bool need_backend, struct vi_machine *m)
{
	int rc;

	memset(m, 0, sizeof(*m));
	if ((rc = vi_store_load_vm(s, name, &m->def)) < 0)
		return rc;
	m->dir = vi_store_path(s, "vms/%s", name);
	vi_vm_hv_init(&m->view, &m->def, m->dir);
	if (!uri)
		uri = m->def.connect;
	m->hv = vi_hv_find(plugins, m->def.hv);
	if (!m->hv) {
		m->hv_problem = xasprintf("backend '%s' is not installed", m->def.hv);
		if (need_backend) {
			rc = vi_error(VI_EUNSUPPORTED, "VM '%s' uses backend '%s', which is not installed",
				      name, m->def.hv);
			goto fail;
		}
	} else if (vi_hv_probe(m->hv, uri), !vi_hv_usable(m->hv)) {
		char *where = uri ? xasprintf(" at '%s'", uri) : xstrdup("");
		const char *why = m->hv->reason ? m->hv->reason : "declined";
		m->hv_problem = xasprintf("backend '%s' is not usable%s: %s", m->def.hv, where, why);
		if (need_backend)
			rc = vi_error(VI_EFAIL, "backend '%s' of VM '%s' is not usable%s: %s",
				      m->def.hv, name, where, why);
		free(where);
		m->hv = NULL;
		if (need_backend)
			goto fail;
	}
	vi_error_clear();
	return 0;
fail:
	vi_machine_release(m);
	return rc;
}

void vi_machine_release(struct vi_machine *m)
{
	vi_vm_hv_release(&m->view);
	vi_vm_release(&m->def);
	free(m->hv_problem);
	free(m->dir);
	memset(m, 0, sizeof(*m));
}

int vi_machine_state(struct vi_machine *m, struct vi_hv_state *st)
{
	memset(st, 0, sizeof(*st));
	if (!m->hv || vi_hv_state(m->hv, &m->view.vm, st) < 0) {
		st->state = VI_HV_UNKNOWN;
		return VI_HV_UNKNOWN;
	}
	return st->state;
}

char *vi_machine_nic_address(struct vi_machine *m, int state, size_t i)
{
	char buf[64];
	int rc;

	if (!m->hv || i >= m->def.nnics || state != VI_HV_RUNNING)
		return NULL;
	rc = vi_hv_nic_address(m->hv, &m->view.vm, i, buf, sizeof(buf));
	vi_error_clear();
	if (rc == 0)
		return xstrdup(buf);
	return rc == -VI_EUNSUPPORTED && !strcmp(m->def.nics[i].mode, "user")
		       ? xstrdup(VI_HV_USER_GUEST_IP)
		       : NULL;
}
