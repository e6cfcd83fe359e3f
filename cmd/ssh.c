/* vi ssh NAME [-- COMMAND...] and vi exec NAME -- COMMAND...: into a running
 * guest over SSH, with the store's key and the host key vi recorded for the
 * machine, through its port forward or its address. */
#include "cmd.h"
#include "error.h"
#include "machine.h"
#include "ssh.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int tty;

const struct vi_option ssh_options[] = {
	OPT_CONNECT,
	VI_OPT_TABLE_END,
};

const struct vi_option exec_options[] = {
	{ "tty", 't', VI_OPT_FLAG, &tty, NULL, "give the command a terminal" },
	OPT_CONNECT,
	VI_OPT_TABLE_END,
};

/* Replaces vi with ssh: its exit status is the command's (255: ssh's own
 * failure), and the terminal is ssh's alone. */
static int run_ssh(const char *name, unsigned flags, char *const *command, size_t n)
{
	struct vi_machine m;
	struct vi_ssh_target t;
	char **argv;
	int rc;

	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, name, ctx.connect, true, &m)) < 0)
		return rc;
	rc = vi_ssh_target(&ctx.store, &m, &t);
	vi_machine_release(&m);
	if (rc < 0)
		return rc;
	argv = vi_ssh_argv(&t, flags, command, n);
	vi_ssh_target_release(&t);
	fflush(stdout);
	signal(SIGPIPE, SIG_DFL);
	execvp(argv[0], argv);
	rc = vi_error_errno(errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL, errno,
			    "cannot run 'ssh'%s", errno == ENOENT ? " (package openssh-client)" : "");
	signal(SIGPIPE, SIG_IGN);
	vi_strv_free(argv);
	return rc;
}

static int check_dashdash(int argc, char **argv)
{
	if (argc > 1 && vi_opt_dashdash != 1)
		return vi_error(VI_EUSAGE, "unexpected argument '%s' (a command goes after --)",
				argv[1]);
	return 0;
}

int cmd_ssh(int argc, char **argv)
{
	int rc = check_dashdash(argc, argv);

	if (rc < 0)
		return rc;
	/* As ssh does: the words of the command reach the guest's shell as one line. */
	return run_ssh(argv[0], argc == 1 && isatty(STDIN_FILENO) ? VI_SSH_TTY : 0, argv + 1,
		       (size_t)argc - 1);
}

int cmd_exec(int argc, char **argv)
{
	int rc = check_dashdash(argc, argv);
	char *line;

	if (rc < 0)
		return rc;
	if (argc < 2)
		return vi_error(VI_EUSAGE, "no command: vi exec %s -- COMMAND [ARG...]", argv[0]);
	line = xstrdup("");
	/* Each argument stays one argument in the guest, as with docker exec. */
	for (int i = 1; i < argc; i++) {
		char *q = vi_shell_quote(argv[i]), *n = xasprintf("%s%s%s", line, i > 1 ? " " : "", q);
		free(q);
		free(line);
		line = n;
	}
	rc = run_ssh(argv[0], tty ? VI_SSH_TTY : 0, &line, 1);
	free(line);
	return rc;
}
