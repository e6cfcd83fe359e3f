/* libvirt connections for the plugins: one per context, opened on first use,
 * and libvirt's errors turned into vi's messages and exit codes. */
#include "virt.h"
#include "error.h"
#include "util.h"

#include <ctype.h>
#include <libxml/uri.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct virt_conn {
	const char *default_uri;
	virConnectPtr conn;
	char *reason; /* the last probe's, owned */
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT, events_once = PTHREAD_ONCE_INIT;
static int init_rc, events_rc;

static void ignore_error(void *opaque, virErrorPtr err)
{
	(void)opaque;
	(void)err;
}

static void init_libvirt(void)
{
	/* Our messages replace the ones libvirt would print on stderr. */
	virSetErrorFunc(NULL, ignore_error);
	init_rc = virInitialize();
}

static void init_events(void)
{
	events_rc = virEventRegisterDefaultImpl();
}

/* libvirt's last error as one line in our style; owned by the caller. */
static char *last_message(void)
{
	const virError *err = virGetLastError();
	const char *m = err && err->message ? err->message : "unknown libvirt error";
	char *s = xstrdup(m), *p;

	/* "Failed to connect socket" reads like ours lowercased; "QEMU ..." stays. */
	if (isupper((unsigned char)s[0]) && islower((unsigned char)s[1]))
		s[0] = (char)tolower((unsigned char)s[0]);
	for (p = s; *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	while (p > s && (p[-1] == ' ' || p[-1] == '.'))
		*--p = '\0';
	return s;
}

static int error_code(void)
{
	const virError *err = virGetLastError();

	switch (err ? err->code : VIR_ERR_OK) {
	case VIR_ERR_NO_DOMAIN:
		return VI_ENOTFOUND;
	case VIR_ERR_OPERATION_INVALID:
	case VIR_ERR_DOM_EXIST:
		return VI_ESTATE;
	case VIR_ERR_NO_SUPPORT:
	case VIR_ERR_CONFIG_UNSUPPORTED:
	case VIR_ERR_ARGUMENT_UNSUPPORTED:
		return VI_EUNSUPPORTED;
	case VIR_ERR_INVALID_ARG:
		return VI_EUSAGE;
	case VIR_ERR_OPERATION_TIMEOUT:
		return VI_ETIMEOUT;
	default:
		return VI_EFAIL;
	}
}

int virt_error(const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	char *msg = last_message();
	int rc = vi_error(error_code(), "%s: %s", what, msg);
	free(msg);
	virResetLastError();
	return rc;
}

int virt_open(struct vi_hv_ctx *ctx, const char *default_uri)
{
	pthread_once(&init_once, init_libvirt);
	if (init_rc < 0)
		return vi_error(VI_EFAIL, "cannot initialise libvirt");
	struct virt_conn *c = xcalloc(1, sizeof(*c));
	c->default_uri = default_uri;
	ctx->priv = c;
	return 0;
}

void virt_close(struct vi_hv_ctx *ctx)
{
	struct virt_conn *c = ctx->priv;

	if (!c)
		return;
	if (c->conn)
		virConnectClose(c->conn);
	free(c->reason);
	free(c);
	ctx->priv = NULL;
}

void virt_forget_connection(struct vi_hv_ctx *ctx)
{
	struct virt_conn *c = ctx->priv;

	c->conn = NULL;
}

const char *virt_uri(const struct vi_hv_ctx *ctx)
{
	const struct virt_conn *c = ctx->priv;
	return ctx->uri ? ctx->uri : c->default_uri;
}

bool virt_is_local(const struct vi_hv_ctx *ctx)
{
	xmlURIPtr u = xmlParseURI(virt_uri(ctx));
	bool local = u && (!u->server || !*u->server);

	xmlFreeURI(u);
	return local;
}

/* Opens c->conn, or returns a VI_E* code with *why, the message (owned). */
static int conn_open(struct virt_conn *c, const char *uri, char **why)
{
	xmlURIPtr u = xmlParseURI(uri);
	bool valid = u && u->scheme;

	xmlFreeURI(u);
	if (!valid) {
		*why = xasprintf("invalid libvirt URI '%s'", uri);
		return VI_EUSAGE;
	}
	c->conn = virConnectOpenAuth(uri, virConnectAuthPtrDefault, 0);
	if (!c->conn) {
		char *msg = last_message();
		*why = xasprintf("cannot connect to '%s': %s", uri, msg);
		free(msg);
		virResetLastError();
		return VI_EFAIL;
	}
	return 0;
}

int virt_connect(struct vi_hv_ctx *ctx, virConnectPtr *conn)
{
	struct virt_conn *c = ctx->priv;
	char *why;
	int code;

	if (!c->conn) {
		code = conn_open(c, virt_uri(ctx), &why);
		if (code) {
			vi_error(code, "%s", why);
			free(why);
			return -code;
		}
	}
	*conn = c->conn;
	return 0;
}

int virt_connect_streams(struct vi_hv_ctx *ctx, virConnectPtr *conn)
{
	struct virt_conn streams = { 0 };
	char *why;
	int code;

	pthread_once(&events_once, init_events);
	if (events_rc < 0)
		return vi_error(VI_EFAIL, "cannot start libvirt's event loop");
	code = conn_open(&streams, virt_uri(ctx), &why);
	if (code) {
		vi_error(code, "%s", why);
		free(why);
		return -code;
	}
	*conn = streams.conn;
	return 0;
}

const char *virt_set_reason(struct vi_hv_ctx *ctx, char *reason)
{
	struct virt_conn *c = ctx->priv;

	free(c->reason);
	c->reason = reason;
	return reason;
}

static void format_version(char *buf, size_t len, unsigned long v)
{
	snprintf(buf, len, "%lu.%lu.%lu", v / 1000000, v / 1000 % 1000, v % 1000);
}

int virt_probe(struct vi_hv_ctx *ctx, const char *driver, const char **reason)
{
	struct virt_conn *c = ctx->priv;
	const char *uri = virt_uri(ctx), *type;
	unsigned long lib = 0, hv = 0;
	char libv[32], hvv[32];
	char *why;

	if (!c->conn && conn_open(c, uri, &why)) {
		*reason = virt_set_reason(ctx, xasprintf("no %s host: %s", driver, why));
		free(why);
		return VI_HV_PROBE_DECLINED;
	}
	type = virConnectGetType(c->conn);
	if (!type || virConnectGetLibVersion(c->conn, &lib) < 0 ||
	    virConnectGetVersion(c->conn, &hv) < 0) {
		virt_error("cannot query '%s'", uri);
		return VI_HV_PROBE_ERROR;
	}
	if (strcasecmp(type, driver)) {
		*reason = virt_set_reason(ctx, xasprintf("no %s host: '%s' is a %s host", driver,
							 uri, type));
		return VI_HV_PROBE_DECLINED;
	}
	format_version(libv, sizeof(libv), lib);
	format_version(hvv, sizeof(hvv), hv);
	*reason = virt_set_reason(ctx, xasprintf("%s, libvirt %s, %s %s", uri, libv, type, hvv));
	return VI_HV_PROBE_OK;
}
