/* libFuzzer target: policy documents read, their conditions evaluated and
 * their actions written out, on arbitrary YAML. */
#include "policy.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vi_policy *p;
	double values[VI_M_COUNT];
	size_t n;

	if (vi_policy_parse("fuzz.yaml", (const char *)data, size, &p, &n) < 0)
		return 0;
	for (int i = 0; i < VI_M_COUNT; i++)
		values[i] = i % 3 ? i * 10.0 : NAN;
	for (size_t i = 0; i < n; i++) {
		bool unknown;
		vi_policy_eval(p[i].when, values, &unknown);
		vi_policy_active_at(&p[i], 0);
		for (size_t k = 0; k < p[i].nthen; k++)
			free(vi_policy_action_str(&p[i].then[k]));
	}
	vi_policy_free_all(p, n);
	return 0;
}
