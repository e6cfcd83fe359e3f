/* vi console NAME: attach this terminal to the VM's serial console until the
 * escape character (Ctrl-] by default) is typed or the VM stops. */
#include "cmd.h"
#include "error.h"
#include "machine.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static const char *escape = "^]";

const struct vi_option console_options[] = {
	{ "escape", 'e', VI_OPT_STRING, &escape, "KEY",
	  "detach on this key: ^X for Ctrl-X, or one character (default ^])" },
	OPT_CONNECT,
	VI_OPT_TABLE_END,
};

static int parse_escape(const char *s, int *out)
{
	if (s[0] == '^' && s[1] && !s[2] && toupper((unsigned char)s[1]) >= '@' &&
	    toupper((unsigned char)s[1]) <= '_') {
		*out = toupper((unsigned char)s[1]) - '@';
		return 0;
	}
	if (s[0] && !s[1]) {
		*out = (unsigned char)s[0];
		return 0;
	}
	return vi_error(VI_EUSAGE, "invalid escape key '%s': use ^X or a single character", s);
}

int cmd_console(int argc, char **argv)
{
	struct vi_machine m;
	struct vi_hv_state st;
	struct termios saved, raw;
	bool tty = isatty(STDIN_FILENO);
	int esc = 0, rc;
	(void)argc;

	if ((rc = parse_escape(escape, &esc)) < 0)
		return rc;
	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], ctx.connect, true, &m)) < 0)
		return rc;
	vi_machine_state(&m, &st);
	if (st.state != VI_HV_RUNNING && st.state != VI_HV_PAUSED) {
		rc = vi_error(VI_ESTATE, "VM '%s' is not running", argv[0]);
		goto cleanup;
	}
	if (tty) {
		fprintf(stderr, "Connected to '%s'; escape is %s\r\n", argv[0], escape);
		tcgetattr(STDIN_FILENO, &saved);
		raw = saved;
		cfmakeraw(&raw);
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	}
	rc = vi_hv_console(m.hv, &m.view.vm, STDIN_FILENO, STDOUT_FILENO, esc);
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
		fprintf(stderr, "\nDisconnected from '%s'\n", argv[0]);
	}
cleanup:
	vi_machine_release(&m);
	return rc;
}
