/* libFuzzer target: the template parser, parameter substitution and the
 * canonical text, on arbitrary YAML. */
#include "error.h"
#include "template.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const sets[] = { "name=fuzz", "size=64M" };
	struct template *t;
	char *text;

	/* No search path of the host's: a base is found only as a path. */
	setenv("VI_TEMPLATE_PATH", "/nonexistent", 1);
	if (template_load_string("/nonexistent", "fuzz.yaml", (const char *)data, size, sets, 2,
				 &t) < 0)
		return 0;
	if (template_to_yaml(t, &text) == 0)
		free(text);
	template_free(t);
	return 0;
}
