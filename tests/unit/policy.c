/* Unit tests: the policy language, read from YAML and evaluated. */
#include "error.h"
#include "policy.h"
#include "util.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>

static struct vi_policy *pol;
static size_t npol;

static int parse(const char *text)
{
	vi_policy_free_all(pol, npol);
	pol = NULL;
	npol = 0;
	return vi_policy_parse("p.yaml", text, strlen(text), &pol, &npol);
}

/* A policy whose when is cond, for condition tests. */
static int parse_when(const char *cond)
{
	char *text = xasprintf("name: t\nvms: a\nwhen: %s\nthen: restart\n", cond);
	int rc = parse(text);
	free(text);
	return rc;
}

#define fails(text, msg)                                                                       \
	do {                                                                                   \
		is_int(parse(text), -VI_EUSAGE, "refused: %s", msg);                           \
		is_str(vi_error_message(), msg, "its message");                                \
	} while (0)

#define when_fails(cond, msg)                                                                  \
	do {                                                                                   \
		is_int(parse_when(cond), -VI_EUSAGE, "refused: when: %s", cond);               \
		is_str(vi_error_message(), msg, "its message");                                \
	} while (0)

static void timing(const struct vi_policy *p, int aggregate, int across, unsigned window,
		   unsigned hold, unsigned cooldown, const char *what)
{
	is_int(p->aggregate, aggregate, "aggregate: %s", what);
	is_int(p->across, across, "across: %s", what);
	is_int(p->window, window, "window: %s", what);
	is_int(p->hold, hold, "for: %s", what);
	is_int(p->cooldown, cooldown, "cooldown: %s", what);
}

static void keys_and_defaults(void)
{
	struct vi_policy *p;
	char *s;

	is_int(parse("name: web-cpu\nvms: [web-*, label:env=prod]\nwhen: cpu.util > 90\n"
		     "then:\n  - grow: {cpus: +1}\n"),
	       0, "a small policy");
	is_int(npol, 1, "one policy");
	p = &pol[0];
	is_str(p->name, "web-cpu", "name");
	is_str(p->source, "p.yaml", "source");
	is_int(p->nvms, 2, "two selectors");
	is_str(p->vms[1], "label:env=prod", "a label selector");
	is_str(p->when_text, "cpu.util > 90", "the condition's text");
	timing(p, VI_AGG_AVG, VI_ACROSS_ANY, 60, 0, 0, "the defaults");
	is_int(p->nschedule, 0, "no schedule");
	ok(!p->schedule_text, "no schedule text");
	is_int(p->max.cpus + p->max.memory + p->max.disk, 0, "no max");
	is_int(p->min.cpus + p->min.memory + p->min.disk, 0, "no min");
	is_int(p->nthen, 1, "one action");
	is_int(p->then[0].kind, VI_ACT_GROW, "grow");
	is_int(p->then[0].grow.cpus.sign, 1, "+");
	is_int(p->then[0].grow.cpus.value, 1, "1");
	is_int(p->then[0].line, 5, "the action's line");
	is_int(p->then[0].column, 5, "the action's column");

	is_int(parse("name: all\nvms: db-1\nwhen: mem.used > 900M\naggregate: p95\nacross: all\n"
		     "window: 5m\nfor: 2h\ncooldown: 1d\nschedule: mon-fri 08:00-18:00\n"
		     "max: {cpus: 8, memory: 16G, disk: 1T}\nmin: {cpus: 2, memory: 1G}\n"
		     "then:\n  - grow: {cpus: +1, memory: +512M, disk: vdb:+10G}\n"
		     "  - shrink: {memory: 1G}\n  - exec: /usr/local/bin/notify \"$VI_VM\"\n"
		     "  - migrate: least-loaded\n  - migrate: host-2\n  - snapshot: {keep: 3}\n"
		     "  - snapshot\n  - start\n  - stop: {}\n  - restart: null\n  - restart:\n"),
	       0, "every key");
	p = &pol[0];
	is_str(p->vms[0], "db-1", "a single string for vms");
	timing(p, VI_AGG_P95, VI_ACROSS_ALL, 300, 7200, 86400, "p95, all, 5m, 2h, 1d");
	is_int(p->nschedule, 1, "one window");
	is_str(p->schedule_text, "mon-fri 08:00-18:00", "schedule text");
	is_int(p->schedule[0].days, 0x3e, "monday to friday");
	is_int(p->schedule[0].from, 8 * 60, "from 08:00");
	is_int(p->schedule[0].to, 18 * 60, "to 18:00");
	is_int(p->max.cpus, 8, "max cpus");
	is_int(p->max.memory, 16ull << 30, "max memory");
	is_int(p->max.disk, 1ull << 40, "max disk");
	is_int(p->min.cpus, 2, "min cpus");
	is_int(p->min.memory, 1 << 30, "min memory");
	is_int(p->nthen, 11, "eleven actions");
	static const char *const want[] = {
		"grow cpus +1 memory +512M disk vdb:+10G",
		"shrink memory -1G",
		"exec /usr/local/bin/notify \"$VI_VM\"",
		"migrate least-loaded",
		"migrate host-2",
		"snapshot keep 3",
		"snapshot",
		"start",
		"stop",
		"restart",
		"restart",
	};
	for (size_t i = 0; i < ARRAY_SIZE(want) && i < p->nthen; i++) {
		s = vi_policy_action_str(&p->then[i]);
		is_str(s, want[i], "action %zu as a line", i);
		free(s);
	}
	is_int(p->then[1].grow.memory.sign, -1, "shrink's amounts are negative");
	is_int(p->then[0].grow.ndisks, 1, "one disk");
	is_str(p->then[0].grow.disks[0].name, "vdb", "the disk named");

	is_int(parse("name: one\nvms: a\nwhen: state == crashed\nthen: restart\n"), 0,
	       "then: a single action");
	is_int(pol[0].nthen, 1, "one action");
	is_int(pol[0].then[0].kind, VI_ACT_RESTART, "restart");
	is_int(parse("name: one\nvms: a\nwhen: state == crashed\nthen: {grow: {memory: 2G}}\n"),
	       0, "then: a single action as a mapping");
	is_int(pol[0].then[0].grow.memory.sign, 0, "an absolute amount");
	is_int(parse("name: w\nvms: a\nwhen: cpus < 2\nwindow: 90\nschedule: ['sat,sun', "
		     "'22:00-06:00', fri-mon 10:00-12:00, tue]\nthen: [start]\n"),
	       0, "a list of schedule windows");
	p = &pol[0];
	is_int(p->window, 90, "a bare number of seconds");
	is_int(p->nschedule, 4, "four windows");
	is_str(p->schedule_text, "sat,sun; 22:00-06:00; fri-mon 10:00-12:00; tue",
	       "their text joined");
	is_int(p->schedule[0].days, 0x41, "saturday and sunday");
	is_int(p->schedule[0].from, 0, "all day: from 00:00");
	is_int(p->schedule[0].to, 24 * 60, "all day: to 24:00");
	is_int(p->schedule[1].days, 0x7f, "every day");
	is_int(p->schedule[1].from, 22 * 60, "from 22:00");
	is_int(p->schedule[1].to, 6 * 60, "to 06:00, the next day");
	is_int(p->schedule[2].days, 0x63, "friday round to monday");
	is_int(p->schedule[3].days, 0x04, "tuesday");
	is_int(parse("name: s\nvms: a\nwhen: cpus < 2\nthen: [start]\nmin: {cpus: 1}\n"
		     "max: {disk: 20G}\n"),
	       0, "min and max apart");
}

static void errors(void)
{
	fails("name: x\nvms: a\nwehn: cpu.util > 1\nthen: restart\n",
	      "p.yaml:3:1: unknown key 'wehn'; did you mean 'when'?");
	fails("name: x\nvms: a\nthen: restart\n", "p.yaml:1:1: missing required key 'when'");
	fails("name: x\nwhen: cpus > 1\nthen: restart\n", "p.yaml:1:1: missing required key 'vms'");
	fails("vms: a\nwhen: cpus > 1\nthen: restart\n", "p.yaml:1:1: missing required key 'name'");
	fails("name: x\nvms: a\nwhen: cpus > 1\n", "p.yaml:1:1: missing required key 'then'");
	fails("name: -x\nvms: a\nwhen: cpus > 1\nthen: restart\n",
	      "p.yaml:1:7: invalid policy name '-x': it must start with a letter or digit");
	fails("- a\n- b\n", "p.yaml:1:1: a policy must be a mapping, not a list");
	fails("name: x\nvms: []\nwhen: cpus > 1\nthen: restart\n", "p.yaml:2:6: 'vms' is empty");
	fails("name: x\nvms: [a, {b: c}]\nwhen: cpus > 1\nthen: restart\n",
	      "p.yaml:2:10: 'vms' lists strings, not a mapping");
	fails("name: x\nvms: label:env\nwhen: cpus > 1\nthen: restart\n",
	      "p.yaml:2:6: invalid selector 'label:env': expected a name, a glob or label:KEY=VALUE");
	fails("name: x\nvms: a\nwhen: cpus > 1\naggregate: agv\nthen: restart\n",
	      "p.yaml:4:12: unknown aggregate 'agv'; did you mean 'avg'?");
	fails("name: x\nvms: a\nwhen: cpus > 1\naggregate: mean\nthen: restart\n",
	      "p.yaml:4:12: unknown aggregate 'mean'");
	fails("name: x\nvms: a\nwhen: cpus > 1\nacross: al\nthen: restart\n",
	      "p.yaml:4:9: unknown across 'al'; did you mean 'all'?");
	fails("name: x\nvms: a\nwhen: cpus > 1\nwindow: 5x\nthen: restart\n",
	      "p.yaml:4:9: invalid window '5x': expected a duration such as 30s, 5m, 2h or 1d");
	fails("name: x\nvms: a\nwhen: cpus > 1\nwindow: 0\nthen: restart\n",
	      "p.yaml:4:9: invalid window '0': must be at least 1s");
	fails("name: x\nvms: a\nwhen: cpus > 1\nfor: 1.5s\nthen: restart\n",
	      "p.yaml:4:6: invalid for '1.5s': expected a duration such as 30s, 5m, 2h or 1d");
	fails("name: x\nvms: a\nwhen: cpus > 1\ncooldown: -1m\nthen: restart\n",
	      "p.yaml:4:11: invalid cooldown '-1m': expected a duration such as 30s, 5m, 2h or 1d");
	fails("name: x\nvms: a\nwhen: cpus > 1\nmax: {memory: 16Q}\nthen: restart\n",
	      "p.yaml:4:15: invalid memory '16Q': expected a size such as 512M or 2G");
	fails("name: x\nvms: a\nwhen: cpus > 1\nmax: {cpu: 4}\nthen: restart\n",
	      "p.yaml:4:7: unknown key 'cpu'; did you mean 'cpus'?");
	fails("name: x\nvms: a\nwhen: cpus > 1\nmax: {cpus: 2}\nmin: {cpus: 4}\nthen: restart\n",
	      "p.yaml:5:6: min cpus is above max cpus");
	fails("name: x\nvms: a\nwhen: cpus > 1\nschedule: mon-fri 8:00-18:00\nthen: restart\n",
	      "p.yaml:4:19: invalid time range '8:00-18:00': expected HH:MM-HH:MM such as 08:00-18:00");
	fails("name: x\nvms: a\nwhen: cpus > 1\nschedule: mon-fir\nthen: restart\n",
	      "p.yaml:4:15: unknown day 'fir'; did you mean 'fri'?");
	fails("name: x\nvms: a\nwhen: cpus > 1\nschedule: [sat, 'sun,mo']\nthen: restart\n",
	      "p.yaml:4:17: unknown day 'mo'; did you mean 'mon'?");
	fails("name: x\nvms: a\nwhen: cpus > 1\nschedule: 08:00-08:00\nthen: restart\n",
	      "p.yaml:4:11: invalid time range '08:00-08:00': it is empty");
	fails("name: x\nvms: a\nwhen: cpus > 1\nschedule: 08:00-09:00 mon\nthen: restart\n",
	      "p.yaml:4:11: invalid schedule '08:00-09:00 mon': expected [DAYS] [HH:MM-HH:MM], such as mon-fri 08:00-18:00");
	fails("name: x\nvms: a\nwhen: cpus > 1\nschedule: 25:00-26:00\nthen: restart\n",
	      "p.yaml:4:11: invalid time range '25:00-26:00': expected HH:MM-HH:MM such as 08:00-18:00");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [restrat]\n",
	      "p.yaml:4:8: unknown action 'restrat'; did you mean 'restart'?");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen:\n  - reboot: {}\n",
	      "p.yaml:5:5: unknown action 'reboot'");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: []\n", "p.yaml:4:7: 'then' is empty");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [grow]\n",
	      "p.yaml:4:8: action 'grow' takes a mapping of cpus, memory or disk, such as {cpus: +1}");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [grow: {}]\n",
	      "p.yaml:4:14: action 'grow' takes a mapping of cpus, memory or disk, such as {cpus: +1}");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [grow: {cpus: -1}]\n",
	      "p.yaml:4:21: grow '-1': use shrink to take away");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [shrink: {cpus: +1}]\n",
	      "p.yaml:4:23: shrink '+1': use grow to add");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [shrink: {disk: 1G}]\n",
	      "p.yaml:4:16: disks only grow: shrink takes cpus and memory");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [grow: {cpus: 50%}]\n",
	      "p.yaml:4:21: invalid cpus '50%': expected a count such as +1 or 4");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [grow: {memory: lots}]\n",
	      "p.yaml:4:23: invalid memory 'lots': expected a size such as +1G or 4G");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [grow: {disk: ':1G'}]\n",
	      "p.yaml:4:21: invalid disk ':1G': expected a size such as +10G, or vdb:+10G");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [grow: {cpus: +1, mem: 1G}]\n",
	      "p.yaml:4:25: unknown key 'mem'; did you mean 'memory'?");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [exec]\n",
	      "p.yaml:4:8: action 'exec' takes a command");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [migrate: '']\n",
	      "p.yaml:4:17: action 'migrate' takes a host's name or least-loaded");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [migrate: 'a b']\n",
	      "p.yaml:4:17: invalid host name 'a b': only letters, digits, '.', '_' and '-' are allowed");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [restart: now]\n",
	      "p.yaml:4:17: action 'restart' takes no value");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [snapshot: {keep: x}]\n",
	      "p.yaml:4:25: invalid keep 'x': expected a whole number");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [{start: , stop: }]\n",
	      "p.yaml:4:8: an action is one key, such as grow: {cpus: +1}");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: [[start]]\n",
	      "p.yaml:4:8: an action is a name or a mapping, not a list");
	fails("name: x\nvms: a\nwhen: cpus > 1\nthen: stop\n---\nname: x\nvms: b\nwhen: cpus > 2\n"
	      "then: start\n",
	      "p.yaml:6:7: policy 'x' is defined twice (first at line 1)");
}

static void condition_errors(void)
{
	/* The when value starts at column 7 of line 3. */
	when_fails("cpu.utl > 90", "p.yaml:3:7: unknown metric 'cpu.utl'; did you mean 'cpu.util'?");
	when_fails("cpus > 1 and dsk.read.bytes > 1M",
		   "p.yaml:3:20: unknown metric 'dsk.read.bytes'; did you mean 'disk.read.bytes'?");
	when_fails("bogus > 1", "p.yaml:3:7: unknown metric 'bogus'");
	when_fails("cpu.util 90", "p.yaml:3:16: expected a comparison operator after 'cpu.util'");
	when_fails("cpu.util", "p.yaml:3:15: expected a comparison operator after 'cpu.util'");
	when_fails("cpu.util = 90", "p.yaml:3:16: expected a comparison operator after 'cpu.util'");
	when_fails("cpu.util >", "p.yaml:3:17: expected a value after '>'");
	when_fails("(cpu.util > 90", "p.yaml:3:7: unbalanced '('");
	when_fails("cpu.util > 90)", "p.yaml:3:20: unbalanced ')'");
	when_fails("cpu.util > 90 xyz", "p.yaml:3:21: unexpected 'xyz'");
	when_fails("cpu.util > 90 and", "p.yaml:3:24: expected a comparison after 'and'");
	when_fails("not", "p.yaml:3:10: expected a comparison after 'not'");
	when_fails("cpu.util > 90 or or cpus > 1", "p.yaml:3:24: unexpected 'or'");
	when_fails("'> 3'", "p.yaml:3:7: unexpected '>'");
	when_fails("cpus > 1 $", "p.yaml:3:16: unexpected '$'");
	when_fails("''", "p.yaml:3:7: the condition is empty");
	when_fails("cpu.util > 90G",
		   "p.yaml:3:18: invalid value '90G' for cpu.util: expected a percentage such as 90%");
	when_fails("mem.used > 90%",
		   "p.yaml:3:18: invalid value '90%' for mem.used: expected a size such as 512M or 2G");
	when_fails("uptime < 5x",
		   "p.yaml:3:16: invalid value '5x' for uptime: expected a duration such as 30s, 5m, 2h or 1d");
	when_fails("cpus > 2%", "p.yaml:3:14: invalid value '2%' for cpus: expected a number");
	when_fails("disk.read.ops > 1M",
		   "p.yaml:3:23: invalid value '1M' for disk.read.ops: expected a number of operations per second");
	when_fails("cpu.util > high",
		   "p.yaml:3:18: invalid value 'high' for cpu.util: expected a percentage such as 90%");
	when_fails("state == runing", "p.yaml:3:16: unknown state 'runing'; did you mean 'running'?");
	when_fails("state == 2",
		   "p.yaml:3:16: state compares with a state name (stopped, running, paused, shutting-down or crashed), not '2'");
	when_fails("state > running", "p.yaml:3:13: state compares only with == or !=");
	when_fails("cpu.util == running",
		   "p.yaml:3:19: cpu.util compares with a percentage such as 90%, not the state 'running'");
	when_fails("\"cpu.utl > 90\"",
		   "p.yaml:3:7: unknown metric 'cpu.utl'; did you mean 'cpu.util'?");
	when_fails(">\n  cpus > 1 and\n  bogus > 2", /* folded: at its start */
		   "p.yaml:3:7: unknown metric 'bogus'");
}

static const struct vi_policy_expr *cond(const char *text)
{
	if (parse_when(text) < 0) {
		ok(0, "condition '%s' parses: %s", text, vi_error_message());
		return NULL;
	}
	return pol[0].when;
}

static void evaluation(void)
{
	double v[VI_M_COUNT];
	const struct vi_policy_expr *e;
	bool unknown, used[VI_M_COUNT] = { false };

	for (int i = 0; i < VI_M_COUNT; i++)
		v[i] = NAN;
	v[VI_M_CPU_UTIL] = 95;
	v[VI_M_CPUS] = 2;
	v[VI_M_MEMORY] = 2.0 * (1 << 30);
	v[VI_M_STATE] = VI_HV_RUNNING;
	v[VI_M_UPTIME] = 600;
	v[VI_M_NET_RX_BYTES] = 20 << 20;
	static const struct {
		const char *cond;
		bool want, unknown;
	} cases[] = {
		{ "cpu.util > 90", true, false },
		{ "cpu.util > 95", false, false },
		{ "cpu.util >= 95%", true, false },
		{ "cpu.util < 95.5", true, false },
		{ "cpu.util <= 94.9", false, false },
		{ "cpu.util == 95", true, false },
		{ "cpu.util != 95", false, false },
		{ "cpus==2", true, false },
		{ "memory >= 2G", true, false },
		{ "memory > 2GiB", false, false },
		{ "memory < 2049M", true, false },
		{ "net.rx.bytes > 10M/s", true, false },
		{ "net.rx.bytes > 30M", false, false },
		{ "uptime < 10m", false, false },
		{ "uptime <= 10m", true, false },
		{ "uptime > 1h", false, false },
		{ "state == running", true, false },
		{ "state != running", false, false },
		{ "state == crashed", false, false },
		{ "state != shutting-down", true, false },
		/* Precedence: not over and over or. */
		{ "cpus == 1 and cpus == 2 or cpus == 2", true, false },
		{ "cpus == 2 or cpus == 2 and cpus == 1", true, false },
		{ "(cpus == 2 or cpus == 2) and cpus == 1", false, false },
		{ "not cpus == 1 and cpus == 2", true, false },
		{ "not (cpus == 2 and cpus == 1)", true, false },
		{ "not not cpus == 2", true, false },
		{ "not cpus == 2 or cpus == 2", true, false },
		/* Unknown figures decide nothing. */
		{ "mem.used > 1G", false, true },
		{ "not mem.used > 1G", false, true },
		{ "not not mem.used > 1G", false, true },
		{ "mem.used > 1G or cpus == 2", true, false },
		{ "mem.used > 1G or cpus == 3", false, true },
		{ "mem.used > 1G and cpus == 3", false, false },
		{ "mem.used > 1G and cpus == 2", false, true },
		{ "not (mem.used > 1G and cpus == 3)", true, false },
		{ "host.load > 1 or not host.load > 1", false, true },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		if (!(e = cond(cases[i].cond)))
			continue;
		unknown = !cases[i].unknown;
		is_int(vi_policy_eval(e, v, &unknown), cases[i].want, "%s", cases[i].cond);
		is_int(unknown, cases[i].unknown, "%s: %s", cases[i].cond,
		       cases[i].unknown ? "unknown" : "known");
	}
	if ((e = cond("cpu.util > 1 and (mem.used < 1G or not state == crashed)"))) {
		vi_policy_expr_metrics(e, used);
		ok(used[VI_M_CPU_UTIL] && used[VI_M_MEM_USED] && used[VI_M_STATE] && !used[VI_M_CPUS],
		   "the metrics a condition reads");
		ok(vi_policy_eval(e, v, NULL), "true without mem.used; unknown may be NULL");
	}
}

static void aggregates(void)
{
	double v[20], n3[] = { NAN, NAN, NAN }, mixed[] = { 4, NAN, 1, 7 };

	for (int i = 0; i < 20; i++)
		v[i] = 20 - i; /* 20 down to 1 */
	is_int(vi_policy_aggregate(VI_AGG_AVG, v, 20) * 10, 105, "avg");
	is_int(vi_policy_aggregate(VI_AGG_MAX, v, 20), 20, "max");
	is_int(vi_policy_aggregate(VI_AGG_MIN, v, 20), 1, "min");
	is_int(vi_policy_aggregate(VI_AGG_P95, v, 20), 19, "p95 of 20: the 19th");
	is_int(vi_policy_aggregate(VI_AGG_P95, v, 19), 20, "p95 of 19: the 19th (20 down to 2)");
	is_int(vi_policy_aggregate(VI_AGG_P95, v + 19, 1), 1, "p95 of one");
	ok(isnan(vi_policy_aggregate(VI_AGG_AVG, n3, 3)), "all unknown: unknown");
	ok(isnan(vi_policy_aggregate(VI_AGG_P95, NULL, 0)), "none: unknown");
	is_int(vi_policy_aggregate(VI_AGG_AVG, mixed, 4), 4, "avg leaves out unknowns");
	is_int(vi_policy_aggregate(VI_AGG_MIN, mixed, 4), 1, "min leaves out unknowns");
	is_int(vi_policy_aggregate(VI_AGG_P95, mixed, 4), 7, "p95 leaves out unknowns");
}

/* A local time on 2026-11-23 (a Monday) + day days. */
static time_t at(int day, int hour, int minute)
{
	struct tm tm = { .tm_year = 126, .tm_mon = 10, .tm_mday = 23 + day, .tm_hour = hour,
			 .tm_min = minute, .tm_isdst = -1 };
	return mktime(&tm);
}

static void schedules(void)
{
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	is_int(parse("name: s\nvms: a\nwhen: cpus > 1\nthen: start\n"), 0, "no schedule");
	ok(vi_policy_active_at(&pol[0], at(0, 3, 0)), "no schedule: always active");
	is_int(parse("name: s\nvms: a\nwhen: cpus > 1\nthen: start\n"
		     "schedule: mon-fri 08:00-18:00\n"),
	       0, "office hours");
	ok(vi_policy_active_at(&pol[0], at(0, 8, 0)), "monday 08:00");
	ok(vi_policy_active_at(&pol[0], at(4, 17, 59)), "friday 17:59");
	ok(!vi_policy_active_at(&pol[0], at(4, 18, 0)), "not friday 18:00");
	ok(!vi_policy_active_at(&pol[0], at(0, 7, 59)), "not monday 07:59");
	ok(!vi_policy_active_at(&pol[0], at(5, 12, 0)), "not saturday");
	is_int(parse("name: s\nvms: a\nwhen: cpus > 1\nthen: start\nschedule: fri 22:00-06:00\n"),
	       0, "friday night");
	ok(vi_policy_active_at(&pol[0], at(4, 23, 0)), "friday 23:00");
	ok(vi_policy_active_at(&pol[0], at(5, 5, 59)), "saturday 05:59: the night goes on");
	ok(!vi_policy_active_at(&pol[0], at(5, 6, 0)), "not saturday 06:00");
	ok(!vi_policy_active_at(&pol[0], at(5, 23, 0)), "not saturday 23:00");
	ok(!vi_policy_active_at(&pol[0], at(4, 5, 0)), "not friday 05:00 (thursday's night)");
	is_int(parse("name: s\nvms: a\nwhen: cpus > 1\nthen: start\n"
		     "schedule: ['sat,sun', mon 12:00-13:00, '20:00-24:00']\n"),
	       0, "weekends, a monday lunch, every evening");
	ok(vi_policy_active_at(&pol[0], at(6, 0, 0)), "sunday midnight");
	ok(vi_policy_active_at(&pol[0], at(5, 23, 59)), "saturday 23:59");
	ok(vi_policy_active_at(&pol[0], at(0, 12, 30)), "monday 12:30");
	ok(!vi_policy_active_at(&pol[0], at(1, 12, 30)), "not tuesday 12:30");
	ok(vi_policy_active_at(&pol[0], at(1, 23, 59)), "tuesday 23:59");
	ok(!vi_policy_active_at(&pol[0], at(2, 0, 0)), "not wednesday 00:00");
}

static void selectors(void)
{
	const char *labels[] = { "env=prod", "tier=web" };

	is_int(parse("name: s\nvms: [web-*, db-1, 'label:team=ops', 'label:env=pr*']\n"
		     "when: cpus > 1\nthen: start\n"),
	       0, "selectors");
	ok(vi_policy_selects(&pol[0], "web-3", NULL, 0), "a glob");
	ok(vi_policy_selects(&pol[0], "db-1", NULL, 0), "a name");
	ok(!vi_policy_selects(&pol[0], "db-2", NULL, 0), "not another name");
	ok(!vi_policy_selects(&pol[0], "app", labels + 1, 1), "not another label");
	ok(vi_policy_selects(&pol[0], "app", labels, 2), "a label");
	const char *ops[] = { "team=ops" };
	ok(vi_policy_selects(&pol[0], "app", ops, 1), "a label exactly");
	const char *ops2[] = { "team=ops2" };
	ok(!vi_policy_selects(&pol[0], "app", ops2, 1), "not a longer value");
}

static void documents(void)
{
	const char *text = "# web first\nname: a\nvms: a\nwhen: cpus > 1\nthen: start\n\n"
			   "---\n# then the database\nname: b\nvms: b\nwhen: cpus > 2\nthen: stop\n"
			   "---\n";

	is_int(parse(text), 0, "two documents and an empty one");
	is_int(npol, 2, "two policies");
	is_str(pol[0].text, "# web first\nname: a\nvms: a\nwhen: cpus > 1\nthen: start",
	       "the first's text");
	is_int(pol[0].line, 1, "at line 1");
	is_str(pol[1].text, "# then the database\nname: b\nvms: b\nwhen: cpus > 2\nthen: stop",
	       "the second's text");
	is_int(pol[1].line, 8, "at line 8");
	is_str(pol[1].name, "b", "the second's name");
	is_int(parse(""), 0, "an empty file");
	is_int(npol, 0, "no policies");
	fails("name: a\nvms: a\nwhen: cpus > 1\nthen: start\n---\nname: b\nvms: b\nwhen: cpu > 2\n"
	      "then: stop\n",
	      "p.yaml:8:7: unknown metric 'cpu'; did you mean 'cpu.util'?");
	is_int(npol, 0, "nothing returned on an error");
	is_int(vi_policy_parse("-", "x: 1\n", 5, &pol, &npol), -VI_EUSAGE, "standard input");
	is_str(vi_error_message(), "<stdin>:1:1: unknown key 'x'", "named <stdin>");
}

static void names(void)
{
	char buf[64];

	is_str(vi_policy_aggregate_name(VI_AGG_P95), "p95", "aggregate name");
	is_str(vi_policy_across_name(VI_ACROSS_AVG), "avg", "across name");
	is_str(vi_policy_action_name(VI_ACT_SNAPSHOT), "snapshot", "action name");
	vi_policy_metric_env(VI_M_CPU_UTIL, buf, sizeof(buf));
	is_str(buf, "VI_METRIC_CPU_UTIL", "environment name");
	vi_policy_metric_env(VI_M_MAX_CPUS, buf, sizeof(buf));
	is_str(buf, "VI_METRIC_MAX_CPUS", "environment name with an underscore");
}

int main(void)
{
	keys_and_defaults();
	errors();
	condition_errors();
	evaluation();
	aggregates();
	schedules();
	selectors();
	documents();
	names();
	vi_policy_free_all(pol, npol);
	return done();
}
