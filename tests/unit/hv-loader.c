/* Unit tests: loading the fixture plugins, probing, backend choice, and the
 * wrappers that turn a NULL method into "unsupported". */
#include "error.h"
#include "hv.h"
#include "util.h"
#include "tap.h"

#include <stdlib.h>

int main(void)
{
	const char *build = getenv("VI_BUILD") ? getenv("VI_BUILD") : "build";
	char *dir = xasprintf("%s/tests/plugins", build);
	struct vi_hv_set set = { 0 };
	struct vi_hv *hv;
	struct vi_hv_vm vm = { .struct_size = sizeof(vm), .name = "t", .run_dir = "/nonexistent" };
	struct vi_hv_state st;

	setenv("VI_PLUGIN_DIR", dir, 1);
	vi_hv_scan(&set);
	ok(set.nfiles >= 5 && set.n == 0, "the scan finds the plugin files and loads none");
	ok(vi_hv_find(&set, "fixture") != NULL, "the fixture plugin loads");
	is_int(set.n, 1, "asking for one loads that one only");
	ok(vi_hv_find(&set, "fixture") == &set.hv[0], "and only once");
	ok(vi_hv_find(&set, "older") != NULL, "a plugin with a shorter table loads");
	ok(vi_hv_find(&set, "newer") == NULL, "a newer ABI is refused");
	ok(vi_hv_find(&set, "badabi") == NULL, "ABI version 0 is refused");
	ok(vi_hv_find(&set, "abi1") == NULL, "a plugin built against ABI 1 is refused");
	is_int(set.nerrors, 3, "each refusal recorded once it was tried");
	ok(vi_hv_find(&set, "abi1") == NULL && set.nerrors == 3, "and not tried again");
	vi_hv_load_all(&set);
	is_int(set.nerrors, 5, "five load errors recorded once all are loaded");
	bool named = true;
	for (size_t i = 0; i < set.nerrors; i++)
		named &= strstr(set.load_errors[i], dir) != NULL;
	ok(named, "every load error names its file");

	hv = vi_hv_find(&set, "fixture");
	is_int(vi_hv_probe(hv, NULL), VI_HV_PROBE_OK, "fixture probes ok");
	is_str(hv->reason, "fixture backend for tests", "probe reason kept");
	is_int(vi_hv_probe(hv, "test:///x"), VI_HV_PROBE_DECLINED,
	       "a local-only backend declines a URI");
	is_str(hv->reason, "runs VMs on this host only: a connection means nothing to it",
	       "and says why");
	is_int(vi_hv_probe(hv, NULL), VI_HV_PROBE_OK, "and is usable again without one");
	is_int(vi_hv_state(hv, &vm, &st), 0, "state through the wrapper");
	is_int(st.state, VI_HV_STOPPED, "fixture says stopped");
	is_int(vi_hv_set_vcpus(hv, &vm, 2), -VI_EUNSUPPORTED, "a NULL method is unsupported");
	is_str(vi_error_message(), "backend 'fixture' does not support changing the number of vCPUs",
	       "one message for every NULL method");
	struct vi_hv *bare = vi_hv_find(&set, "bare");
	ok(bare != NULL, "the bare plugin loads");
	is_int(vi_hv_define(bare, &vm), 0,
	       "a NULL define succeeds: the backend keeps no definition of its own");
	is_int(vi_hv_undefine(bare, &vm), 0, "and so does a NULL undefine");

	hv = vi_hv_find(&set, "bare");
	is_int(vi_hv_start(hv, &vm), -VI_EUNSUPPORTED, "bare cannot start VMs");
	is_str(vi_error_message(), "backend 'bare' does not support starting VMs", "and says so");
	is_int(vi_hv_save(hv, &vm, "/nonexistent/state", VI_HV_SAVE_LIVE), -VI_EUNSUPPORTED,
	       "nor save them");
	is_str(vi_error_message(), "backend 'bare' does not support saving VM state", "and says so");

	hv = vi_hv_find(&set, "older");
	is_int(hv->ops.struct_size, sizeof(struct vi_hv_ops), "the host's copy is full size");
	ok(hv->ops.define == NULL && hv->ops.start == NULL,
	   "methods beyond the plugin's table read as NULL");
	is_int(vi_hv_start(hv, &vm), -VI_EUNSUPPORTED, "so they are unsupported, never called");
	is_int(vi_hv_probe(hv, NULL), VI_HV_PROBE_DECLINED, "older declines");

	struct vi_hv *chosen = NULL;
	is_int(vi_hv_choose(&set, "older", NULL, &chosen), -VI_EUNSUPPORTED,
	       "choosing a declining backend by name fails");
	is_str(vi_error_message(), "backend 'older' is not usable here: older ops table",
	       "with the probe's reason");
	is_int(vi_hv_choose(&set, "fixtur", NULL, &chosen), -VI_ENOTFOUND, "unknown backend");
	is_str(vi_error_message(), "no backend named 'fixtur'; did you mean 'fixture'?",
	       "with a suggestion");
	is_int(vi_hv_choose(&set, "fixture", NULL, &chosen), 0, "choose fixture by name");
	is_int(vi_hv_choose(&set, NULL, NULL, &chosen), -VI_EUNSUPPORTED,
	       "fixtures are never chosen automatically");
	is_int(vi_hv_choose(&set, "fixture", "test:///x", &chosen), -VI_EUSAGE,
	       "a URI means nothing to a backend without VI_HV_F_REMOTE");
	is_str(vi_error_message(),
	       "backend 'fixture' runs VMs on this host only: --connect 'test:///x' means nothing to it",
	       "and says so");

	/* An answer of "explicit": usable when named, never picked by itself. */
	hv = vi_hv_find(&set, "fixture");
	vi_hv_probe(hv, NULL);
	hv->probe = VI_HV_PROBE_EXPLICIT;
	ok(vi_hv_usable(hv), "an explicit backend is usable");
	is_int(vi_hv_choose(&set, "fixture", NULL, &chosen), 0, "and chosen when named");
	is_str(vi_hv_probe_name(VI_HV_PROBE_EXPLICIT), "explicit", "it is listed as explicit");
	hv->probe = VI_HV_PROBE_OK;

	const char *caps[32];
	size_t n = vi_hv_caps(hv, caps, 32);
	char joined[256] = "";
	for (size_t i = 0; i < n; i++)
		snprintf(joined + strlen(joined), sizeof(joined) - strlen(joined), "%s%s",
			 i ? "," : "", caps[i]);
	is_str(joined, "direct-boot,firmware-boot,lifecycle,pause,save-restore,live-clone",
	       "capabilities follow methods and features");

	vi_hv_set_release(&set);
	free(dir);
	return done();
}
