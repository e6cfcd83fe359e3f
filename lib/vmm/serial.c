/* An 8250/16550A UART on COM1 (ports 0x3f8-0x3ff, IRQ 4): guest output goes to the
 * console, console input to its receive FIFO. Transmission is instant, so the
 * transmitter is always empty and THRE interrupts follow every write. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

#define COM1_BASE 0x3f8
#define COM1_IRQ  4

#define UART_IER_RDI   0x01
#define UART_IER_THRI  0x02
#define UART_IIR_NONE  0x01
#define UART_IIR_THRI  0x02
#define UART_IIR_RDI   0x04
#define UART_IIR_FIFO  0xc0
#define UART_FCR_FIFO  0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_LCR_DLAB  0x80
#define UART_MCR_LOOP  0x10
#define UART_MCR_OUT2  0x08
#define UART_LSR_DR    0x01
#define UART_LSR_THRE  0x20
#define UART_LSR_TEMT  0x40

#define SERIAL_RX_SIZE 256

struct serial {
	struct vmm *vm;
	pthread_mutex_t lock;
	uint8_t dll, dlm, ier, fcr, lcr, mcr, scr;
	bool thre_pending; /* a THRE interrupt not yet acknowledged by reading IIR */
	bool irq_level;
	uint8_t rx[SERIAL_RX_SIZE];
	unsigned rx_head, rx_count;
};

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & UART_FCR_FIFO) ? UART_IIR_FIFO : 0;

	if ((s->ier & UART_IER_RDI) && s->rx_count)
		return fifo | UART_IIR_RDI;
	if ((s->ier & UART_IER_THRI) && s->thre_pending)
		return fifo | UART_IIR_THRI;
	return fifo | UART_IIR_NONE;
}

/* The PC wires the UART's interrupt through OUT2: without it the line stays low. */
static void serial_update_irq(struct serial *s)
{
	bool level = (s->mcr & UART_MCR_OUT2) && !(serial_iir(s) & UART_IIR_NONE);

	if (level != s->irq_level) {
		s->irq_level = level;
		vmm_irq_line(s->vm, COM1_IRQ, level);
	}
}

static void serial_rx_push(struct serial *s, uint8_t byte)
{
	if (s->rx_count == SERIAL_RX_SIZE)
		return;
	s->rx[(s->rx_head + s->rx_count++) % SERIAL_RX_SIZE] = byte;
}

static uint8_t serial_rx_pop(struct serial *s)
{
	uint8_t byte;

	if (!s->rx_count)
		return 0;
	byte = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_RX_SIZE;
	s->rx_count--;
	return byte;
}

/* In loopback mode the modem outputs feed the modem inputs: DTR->DSR, RTS->CTS,
 * OUT1->RI, OUT2->DCD. Otherwise the line is up: DCD, DSR, CTS. */
static uint8_t serial_msr(const struct serial *s)
{
	uint8_t m = s->mcr;

	if (!(m & UART_MCR_LOOP))
		return 0xb0;
	return (uint8_t)(((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) |
			 ((m & 0x08) << 4));
}

static void serial_read(void *dev, uint64_t offset, uint8_t *data, unsigned len)
{
	struct serial *s = dev;
	bool dlab;

	memset(data, 0, len);
	pthread_mutex_lock(&s->lock);
	dlab = s->lcr & UART_LCR_DLAB;
	switch (offset) {
	case 0:
		data[0] = dlab ? s->dll : serial_rx_pop(s);
		break;
	case 1:
		data[0] = dlab ? s->dlm : s->ier;
		break;
	case 2:
		data[0] = serial_iir(s);
		/* Reading IIR acknowledges the THRE interrupt it reports. */
		if ((data[0] & 0x0f) == UART_IIR_THRI)
			s->thre_pending = false;
		break;
	case 3:
		data[0] = s->lcr;
		break;
	case 4:
		data[0] = s->mcr;
		break;
	case 5:
		data[0] = UART_LSR_THRE | UART_LSR_TEMT | (s->rx_count ? UART_LSR_DR : 0);
		break;
	case 6:
		data[0] = serial_msr(s);
		break;
	case 7:
		data[0] = s->scr;
		break;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_write(void *dev, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct serial *s = dev;
	uint8_t v = data[0];
	bool dlab;

	(void)len;
	pthread_mutex_lock(&s->lock);
	dlab = s->lcr & UART_LCR_DLAB;
	switch (offset) {
	case 0:
		if (dlab) {
			s->dll = v;
		} else {
			if (s->mcr & UART_MCR_LOOP)
				serial_rx_push(s, v);
			else
				vmm_console_output(s->vm, &v, 1);
			s->thre_pending = true;
		}
		break;
	case 1:
		if (dlab) {
			s->dlm = v;
		} else {
			/* Enabling THRE interrupts with an empty transmitter raises one. */
			if ((v & UART_IER_THRI) && !(s->ier & UART_IER_THRI))
				s->thre_pending = true;
			s->ier = v & 0x0f;
		}
		break;
	case 2:
		if (v & UART_FCR_CLEAR_RX)
			s->rx_head = s->rx_count = 0;
		s->fcr = v & (UART_FCR_FIFO | 0xc0);
		break;
	case 3:
		s->lcr = v;
		break;
	case 4:
		s->mcr = v & 0x1f;
		break;
	case 7:
		s->scr = v;
		break;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

void serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&s->lock);
	if (!(s->mcr & UART_MCR_LOOP))
		for (size_t i = 0; i < len; i++)
			serial_rx_push(s, buf[i]);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

/* A restored FIFO must be one this UART could hold; the line follows the registers. */
static int serial_post_load(void *obj)
{
	struct serial *s = obj;

	if (s->rx_head >= SERIAL_RX_SIZE || s->rx_count > SERIAL_RX_SIZE)
		return vi_error(VI_EUSAGE, "receive FIFO at %u with %u bytes is impossible",
				s->rx_head, s->rx_count);
	serial_update_irq(s);
	return 0;
}

static const struct vi_state_field serial_fields[] = {
	VI_STATE_FIELD(struct serial, dll),
	VI_STATE_FIELD(struct serial, dlm),
	VI_STATE_FIELD(struct serial, ier),
	VI_STATE_FIELD(struct serial, fcr),
	VI_STATE_FIELD(struct serial, lcr),
	VI_STATE_FIELD(struct serial, mcr),
	VI_STATE_FIELD(struct serial, scr),
	VI_STATE_FIELD(struct serial, thre_pending),
	VI_STATE_ARRAY(struct serial, rx),
	VI_STATE_FIELD(struct serial, rx_head),
	VI_STATE_FIELD(struct serial, rx_count),
	VI_STATE_FIELDS_END,
};

static const struct vi_state_desc serial_state = {
	.name = "serial", .id = VMM_SECTION_SERIAL, .version = 1, .oldest = 1,
	.fields = serial_fields, .post_load = serial_post_load,
};

static void serial_free(void *dev)
{
	struct serial *s = dev;

	pthread_mutex_destroy(&s->lock);
	free(s);
}

int serial_init(struct vmm *vm)
{
	static const struct vmm_io_ops ops = { serial_read, serial_write };
	struct serial *s = xcalloc(1, sizeof(*s));
	int ret;

	s->vm = vm;
	pthread_mutex_init(&s->lock, NULL);
	ret = vmm_bus_register(vm, VMM_BUS_PIO, COM1_BASE, 8, &ops, s);
	if (ret < 0) {
		serial_free(s);
		return ret;
	}
	vmm_device_add(vm, &(struct vmm_device){ .kind = "serial", .name = "com1", .dev = s,
						 .lock = &s->lock, .free = serial_free,
						 .sections = { { &serial_state, s, 0 } } });
	return 0;
}
