/* An i8042 keyboard controller (ports 0x60 and 0x64, IRQ 1) with a keyboard and no
 * mouse: enough for a guest to reset the machine through it and for the host to press
 * Ctrl-Alt-Del, which Linux answers with a reboot. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

#define I8042_DATA    0x60
#define I8042_COMMAND 0x64
#define I8042_KBD_IRQ 1

#define STATUS_OBF    0x01
#define STATUS_SYS    0x04
#define STATUS_CMD    0x08 /* the last write went to the command port */
#define STATUS_UNLOCK 0x10

#define CTR_KBD_INT   0x01
#define CTR_SYS       0x04
#define CTR_KBD_OFF   0x10
#define CTR_XLATE     0x40

#define OUTPUT_PORT_RESET 0x01 /* active low: clearing it resets the CPU */

#define I8042_QUEUE 16

struct i8042 {
	struct vmm *vm;
	pthread_mutex_t lock;
	uint8_t status, ctr;
	uint8_t pending_cmd; /* controller command awaiting its data byte, or 0 */
	uint8_t kbd_cmd;     /* keyboard command awaiting its argument, or 0 */
	uint8_t queue[I8042_QUEUE];
	unsigned head, count;
	bool irq_level;
};

static void i8042_update_irq(struct i8042 *k)
{
	bool level = k->count && (k->ctr & CTR_KBD_INT);

	if (k->count)
		k->status |= STATUS_OBF;
	else
		k->status &= ~STATUS_OBF;
	if (level != k->irq_level) {
		k->irq_level = level;
		vmm_irq_line(k->vm, I8042_KBD_IRQ, level);
	}
}

static void i8042_queue(struct i8042 *k, const uint8_t *bytes, unsigned n)
{
	for (unsigned i = 0; i < n && k->count < I8042_QUEUE; i++)
		k->queue[(k->head + k->count++) % I8042_QUEUE] = bytes[i];
}

static void i8042_queue1(struct i8042 *k, uint8_t byte)
{
	i8042_queue(k, &byte, 1);
}

/* A byte the guest sends to the keyboard itself. */
static void i8042_keyboard_write(struct i8042 *k, uint8_t v)
{
	static const uint8_t reset_reply[] = { 0xfa, 0xaa };
	uint8_t id_reply[] = { 0xfa, 0xab, (k->ctr & CTR_XLATE) ? 0x41 : 0x83 };

	if (k->kbd_cmd) {
		/* The argument of LED, typematic or scancode-set commands. */
		if (k->kbd_cmd == 0xf0 && v == 0) {
			uint8_t reply[] = { 0xfa, 0x02 };

			i8042_queue(k, reply, sizeof(reply));
		} else {
			i8042_queue1(k, 0xfa);
		}
		k->kbd_cmd = 0;
		return;
	}
	switch (v) {
	case 0xed: /* set LEDs */
	case 0xf3: /* typematic rate */
	case 0xf0: /* scancode set */
		k->kbd_cmd = v;
		i8042_queue1(k, 0xfa);
		break;
	case 0xee: /* echo */
		i8042_queue1(k, 0xee);
		break;
	case 0xf2: /* identify */
		i8042_queue(k, id_reply, sizeof(id_reply));
		break;
	case 0xff: /* reset and self-test */
		i8042_queue(k, reset_reply, sizeof(reset_reply));
		break;
	default: /* enable, disable, set defaults...: acknowledged */
		i8042_queue1(k, 0xfa);
		break;
	}
}

static void i8042_command(struct i8042 *k, uint8_t v)
{
	switch (v) {
	case 0x20: /* read the configuration byte */
		i8042_queue1(k, k->ctr);
		break;
	case 0x60: /* write the configuration byte */
	case 0xd1: /* write the output port */
	case 0xd2: /* write the keyboard output buffer */
		k->pending_cmd = v;
		break;
	case 0xaa: /* controller self-test */
		i8042_queue1(k, 0x55);
		break;
	case 0xab: /* keyboard interface test */
		i8042_queue1(k, 0x00);
		break;
	case 0xad:
		k->ctr |= CTR_KBD_OFF;
		break;
	case 0xae:
		k->ctr &= ~CTR_KBD_OFF;
		break;
	case 0xd0: /* read the output port: A20 on, not in reset */
		i8042_queue1(k, 0x03);
		break;
	default:
		/* 0xf0-0xff pulse output port lines low for a moment; bit 0 is reset. */
		if (v >= 0xf0 && !(v & OUTPUT_PORT_RESET))
			vmm_request_exit(k->vm, VMM_EXIT_RESET);
		/* Commands for the absent mouse port get no answer, so guests find none. */
		break;
	}
}

static void i8042_data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending_cmd;

	k->pending_cmd = 0;
	switch (cmd) {
	case 0x60:
		k->ctr = v;
		k->status = (uint8_t)((k->status & ~STATUS_SYS) | (v & CTR_SYS));
		break;
	case 0xd1:
		if (!(v & OUTPUT_PORT_RESET))
			vmm_request_exit(k->vm, VMM_EXIT_RESET);
		break;
	case 0xd2:
		i8042_queue1(k, v);
		break;
	default:
		i8042_keyboard_write(k, v);
		break;
	}
}

static void i8042_read(void *dev, uint64_t offset, uint8_t *data, unsigned len)
{
	struct i8042 *k = dev;

	memset(data, 0, len);
	pthread_mutex_lock(&k->lock);
	if (offset == I8042_COMMAND - I8042_DATA) {
		data[0] = k->status;
	} else if (offset == 0) {
		if (k->count) {
			data[0] = k->queue[k->head];
			k->head = (k->head + 1) % I8042_QUEUE;
			k->count--;
		}
		/* Dropping the line between bytes gives the edge-triggered PIC a new edge. */
		if (k->irq_level) {
			k->irq_level = false;
			vmm_irq_line(k->vm, I8042_KBD_IRQ, false);
		}
	}
	i8042_update_irq(k);
	pthread_mutex_unlock(&k->lock);
}

static void i8042_write(void *dev, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct i8042 *k = dev;

	(void)len;
	pthread_mutex_lock(&k->lock);
	if (offset == I8042_COMMAND - I8042_DATA) {
		k->status |= STATUS_CMD;
		i8042_command(k, data[0]);
	} else if (offset == 0) {
		k->status &= ~STATUS_CMD;
		i8042_data(k, data[0]);
	}
	i8042_update_irq(k);
	pthread_mutex_unlock(&k->lock);
}

void i8042_press_ctrl_alt_del(struct i8042 *k)
{
	/* Make and break codes in set 1 (what the controller hands over when translating)
	 * and in set 2 (when it does not). */
	static const uint8_t set1[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };
	static const uint8_t set2[] = { 0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71,
					0xf0, 0x11, 0xf0, 0x14 };

	pthread_mutex_lock(&k->lock);
	if (k->ctr & CTR_XLATE)
		i8042_queue(k, set1, sizeof(set1));
	else
		i8042_queue(k, set2, sizeof(set2));
	i8042_update_irq(k);
	pthread_mutex_unlock(&k->lock);
}

static int i8042_post_load(void *obj)
{
	struct i8042 *k = obj;

	if (k->head >= I8042_QUEUE || k->count > I8042_QUEUE)
		return vi_error(VI_EUSAGE, "output queue at %u with %u bytes is impossible",
				k->head, k->count);
	i8042_update_irq(k);
	return 0;
}

static const struct vi_state_field i8042_fields[] = {
	VI_STATE_FIELD(struct i8042, status),
	VI_STATE_FIELD(struct i8042, ctr),
	VI_STATE_FIELD(struct i8042, pending_cmd),
	VI_STATE_FIELD(struct i8042, kbd_cmd),
	VI_STATE_ARRAY(struct i8042, queue),
	VI_STATE_FIELD(struct i8042, head),
	VI_STATE_FIELD(struct i8042, count),
	VI_STATE_FIELDS_END,
};

static const struct vi_state_desc i8042_state = {
	.name = "i8042", .id = VMM_SECTION_I8042, .version = 1, .oldest = 1,
	.fields = i8042_fields, .post_load = i8042_post_load,
};

static void i8042_free(void *dev)
{
	struct i8042 *k = dev;

	pthread_mutex_destroy(&k->lock);
	free(k);
}

int i8042_init(struct vmm *vm)
{
	static const struct vmm_io_ops ops = { i8042_read, i8042_write };
	struct i8042 *k = xcalloc(1, sizeof(*k));
	int ret;

	k->vm = vm;
	k->status = STATUS_SYS | STATUS_UNLOCK;
	k->ctr = CTR_KBD_INT | CTR_SYS | CTR_XLATE;
	pthread_mutex_init(&k->lock, NULL);
	/* One range covers both ports; KVM keeps 0x61 between them for its PIT and never
	 * lets it reach user space. */
	ret = vmm_bus_register(vm, VMM_BUS_PIO, I8042_DATA, I8042_COMMAND - I8042_DATA + 1, &ops,
			       k);
	if (ret < 0) {
		i8042_free(k);
		return ret;
	}
	vmm_device_add(vm, &(struct vmm_device){ .kind = "i8042", .name = "i8042", .dev = k,
						 .lock = &k->lock, .free = i8042_free,
						 .sections = { { &i8042_state, k, 0 } } });
	return 0;
}
