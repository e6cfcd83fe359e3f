/* QEMU's counterpart of `vi snapshot create` with memory, for bench/snapshot: over a
 * running QEMU's QMP socket, stops the guest, migrates it into FILE, waits for the
 * migration to complete and lets the guest go on. QEMU 7.2 has no file: migration, so
 * the stream goes through `exec:cat > FILE`; migration is unthrottled first, as libvirt
 * does for `virsh save`.
 * Usage: qemu-save SOCKET FILE. Prints, in ms from sending `stop`: when the migration
 * had completed, and when `cont` returned (how long the guest was paused). */
#include <errno.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct qmp {
	int fd;
	char buf[65536];
	size_t len;
	char migration[32]; /* the status of the last MIGRATION event, or "" */
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int fail(const char *what, const char *why)
{
	fprintf(stderr, "qemu-save: %s: %s\n", what, why);
	return -1;
}

/* The next message from QEMU, one JSON document a line; NULL when QEMU has gone. The
 * caller owns it. A MIGRATION event leaves its status in q->migration. */
static json_object *qmp_read(struct qmp *q)
{
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);
		ssize_t n;

		if (nl) {
			json_object *msg, *event, *data, *status;

			*nl = '\0';
			msg = json_tokener_parse(q->buf);
			q->len -= (size_t)(nl + 1 - q->buf);
			memmove(q->buf, nl + 1, q->len);
			if (!msg)
				continue;
			if (json_object_object_get_ex(msg, "event", &event) &&
			    !strcmp(json_object_get_string(event), "MIGRATION") &&
			    json_object_object_get_ex(msg, "data", &data) &&
			    json_object_object_get_ex(data, "status", &status))
				snprintf(q->migration, sizeof(q->migration), "%s",
					 json_object_get_string(status));
			return msg;
		}
		if (q->len == sizeof(q->buf))
			return NULL;
		n = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
		if (n <= 0)
			return NULL;
		q->len += (size_t)n;
	}
}

/* Sends a command and waits for its answer, reading the events before it. Returns
 * 0 and, when status is not NULL, the "status" string of the answer there (at most
 * size bytes); or -1 with the reason printed. */
static int qmp_call_status(struct qmp *q, const char *command, char *status, size_t size)
{
	size_t len = strlen(command);

	if (write(q->fd, command, len) != (ssize_t)len)
		return fail("cannot send to QEMU", strerror(errno));
	for (;;) {
		json_object *msg = qmp_read(q), *error, *ret, *field;

		if (!msg)
			return fail("QEMU closed its QMP socket", command);
		if (json_object_object_get_ex(msg, "error", &error)) {
			fail(command, json_object_to_json_string(error));
			json_object_put(msg);
			return -1;
		}
		if (json_object_object_get_ex(msg, "return", &ret)) {
			if (status)
				snprintf(status, size, "%s",
					 json_object_object_get_ex(ret, "status", &field)
						 ? json_object_get_string(field)
						 : "");
			json_object_put(msg);
			return 0;
		}
		json_object_put(msg);
	}
}

static int qmp_call(struct qmp *q, const char *command)
{
	return qmp_call_status(q, command, NULL, 0);
}

static bool migration_over(const struct qmp *q)
{
	return !strcmp(q->migration, "completed") || !strcmp(q->migration, "failed") ||
	       !strcmp(q->migration, "cancelled");
}

/* Saves the guest of the QEMU on QMP socket sock into file; 0 with the times in ms from
 * `stop` to the migration completed and to `cont` returned, or -1. */
static int qemu_save(struct qmp *q, const char *sock, const char *file, double *completed,
		     double *resumed)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char migrate[4096], state[32];
	json_object *greeting;
	double t0;

	if (strchr(file, '\'') || strchr(file, '"') || strchr(file, '\\'))
		return fail(file, "a path with quotes or backslashes");
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock);
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return fail(sock, strerror(errno));
	greeting = qmp_read(q);
	if (!greeting)
		return fail(sock, "no QMP greeting");
	json_object_put(greeting);
	snprintf(migrate, sizeof(migrate),
		 "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"exec:cat > '%s'\"}}\n",
		 file);
	if (qmp_call(q, "{\"execute\": \"qmp_capabilities\"}\n") < 0 ||
	    qmp_call(q, "{\"execute\": \"migrate-set-capabilities\", \"arguments\": "
			"{\"capabilities\": [{\"capability\": \"events\", \"state\": true}]}}\n") < 0 ||
	    qmp_call(q, "{\"execute\": \"migrate-set-parameters\", \"arguments\": "
			"{\"max-bandwidth\": 1099511627776}}\n") < 0)
		return -1;

	t0 = now_ms();
	q->migration[0] = '\0';
	if (qmp_call(q, "{\"execute\": \"stop\"}\n") < 0 || qmp_call(q, migrate) < 0)
		return -1;
	while (!migration_over(q)) {
		json_object *msg = qmp_read(q);

		if (!msg)
			return fail("QEMU closed its QMP socket", "during the migration");
		json_object_put(msg);
	}
	*completed = now_ms() - t0;
	if (strcmp(q->migration, "completed"))
		return fail("the migration", q->migration);
	/* QEMU says the migration completed before it leaves the finish-migrate state, in
	 * which it refuses `cont`. */
	do {
		if (qmp_call_status(q, "{\"execute\": \"query-status\"}\n", state, sizeof(state)) < 0)
			return -1;
	} while (!strcmp(state, "finish-migrate"));
	if (qmp_call(q, "{\"execute\": \"cont\"}\n") < 0)
		return -1;
	*resumed = now_ms() - t0;
	return 0;
}

int main(int argc, char **argv)
{
	struct qmp q = { .fd = -1 };
	double completed, resumed;

	if (argc != 3) {
		fprintf(stderr, "usage: qemu-save SOCKET FILE\n");
		return 2;
	}
	if (qemu_save(&q, argv[1], argv[2], &completed, &resumed) < 0)
		return 1;
	printf("%.2f %.2f\n", completed, resumed);
	return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}
