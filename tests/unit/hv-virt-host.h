/* What the libvirt backend tests share: a host table that keeps the last error
 * and warning, and loading a plugin the way the host does. Header-only,
 * included once per test program after tap.h. Tests that link lib/virt
 * itself find its errors in vi_error_message(), not in the host table. */
#ifndef VI_TEST_HV_VIRT_HOST_H
#define VI_TEST_HV_VIRT_HOST_H

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vi/hv-plugin.h>

static char host_error_text[1024], host_warning_text[1024];
static int host_error_code;

static inline __attribute__((format(printf, 2, 3))) int host_error(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(host_error_text, sizeof(host_error_text), fmt, ap);
	va_end(ap);
	host_error_code = code;
	return -code;
}

static inline __attribute__((format(printf, 2, 3))) void host_log(int level, const char *fmt, ...)
{
	va_list ap;

	if (level != VI_LOG_WARN)
		return;
	va_start(ap, fmt);
	vsnprintf(host_warning_text, sizeof(host_warning_text), fmt, ap);
	va_end(ap);
}

static inline const char *host_last_error(void)
{
	return host_error_text;
}

static inline int host_last_code(void)
{
	return host_error_code ? host_error_code : VI_EFAIL;
}

static inline void host_clear_error(void)
{
	host_error_text[0] = '\0';
	host_error_code = 0;
}

/* Not const: a test may point home and self_exe elsewhere. */
static struct vi_host test_host = {
	.struct_size = sizeof(struct vi_host),
	.abi_version = VI_HV_ABI_VERSION,
	.version = "test",
	.home = "/nonexistent",
	.error = host_error,
	.log = host_log,
	.self_exe = "/proc/self/exe",
	.error_message = host_last_error,
	.error_code = host_last_code,
	.error_clear = host_clear_error,
};

/* Does the error message contain `part`? Prints it when not. */
static inline int message_has(const char *message, const char *part)
{
	if (strstr(message, part))
		return 1;
	printf("#   error: '%s'\n#   wanted: '%s'\n", message, part);
	return 0;
}

/* Does the last error a plugin gave the host contain `part`? */
static inline int error_has(const char *part)
{
	return message_has(host_error_text, part);
}

/* $VI_BUILD/plugins/hv-NAME.so's table, as the host gets it; NULL (with a
 * comment line) when it does not load. */
static inline const struct vi_hv_ops *load_plugin(const char *name)
{
	const char *build = getenv("VI_BUILD");
	char path[4096];
	void *h;
	vi_hv_plugin_init_fn init;

	snprintf(path, sizeof(path), "%s/plugins/hv-%s.so", build && *build ? build : "build",
		 name);
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		printf("# cannot load '%s': %s\n", path, dlerror());
		return NULL;
	}
	init = (vi_hv_plugin_init_fn)dlsym(h, VI_HV_PLUGIN_INIT_SYMBOL);
	if (!init) {
		printf("# '%s' has no %s\n", path, VI_HV_PLUGIN_INIT_SYMBOL);
		return NULL;
	}
	return init(&test_host);
}

/* A context for uri (NULL: the plugin's default), opened. */
static inline void ctx_open(const struct vi_hv_ops *ops, struct vi_hv_ctx *ctx, const char *uri)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->struct_size = sizeof(*ctx);
	ctx->host = &test_host;
	ctx->uri = uri;
	is_int(ops->open(ctx), 0, "open %s", uri ? uri : "the default URI");
}

#endif
