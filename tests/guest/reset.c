/* Ends the machine the way the command line asks: "reset=i8042" (default) pulses the
 * i8042 reset line, "reset=triple" triple-faults, "reset=wait" echoes COM1 input and
 * waits, halted between interrupts, for 'q' on COM1 or Ctrl-Alt-Del on the keyboard
 * and then resets through the i8042; "reset=never" halts for good, deaf to both. */
#include "guest.h"

REALMODE_BANNER("reset: boot me through the 64-bit entry\n");

#define COM1 0x3f8
#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_DATA 0xa1
#define PIC_EOI 0x20
#define PIC_VECTOR 0x20
#define IRQ_KBD 1
#define IRQ_COM1 4

struct idt_gate {
	uint16_t offset_low, selector;
	uint8_t ist, type;
	uint16_t offset_mid;
	uint32_t offset_high, zero;
} __attribute__((packed));

static struct idt_gate idt[PIC_VECTOR + 8];

struct interrupt_frame;

/* Wakes the hlt in wait_loop(); the loop itself drains the devices. */
__attribute__((interrupt)) static void pic_interrupt(struct interrupt_frame *frame)
{
	(void)frame;
	outb(PIC1_CMD, PIC_EOI);
}

static void interrupts_setup(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (uintptr_t)idt };
	uint64_t isr = (uintptr_t)pic_interrupt;

	for (unsigned v = PIC_VECTOR; v < PIC_VECTOR + 8; v++)
		idt[v] = (struct idt_gate){ (uint16_t)isr, 0x10, 0, 0x8e, (uint16_t)(isr >> 16),
					    (uint32_t)(isr >> 32), 0 };
	__asm__ volatile("lidt %0" : : "m"(idtr));
	/* The master PIC at vectors 0x20-0x27, only the keyboard and COM1 unmasked. */
	outb(PIC1_CMD, 0x11);
	outb(PIC1_DATA, PIC_VECTOR);
	outb(PIC1_DATA, 0x04);
	outb(PIC1_DATA, 0x01);
	outb(PIC1_DATA, (uint8_t)~((1u << IRQ_KBD) | (1u << IRQ_COM1)));
	outb(PIC2_DATA, 0xff);
	/* COM1: receive interrupts on, OUT2 gating the line to the PIC. */
	outb(COM1 + 1, 0x01);
	outb(COM1 + 4, 0x0b);
}

static void wait_loop(void)
{
	bool ctrl = false, alt = false, extended = false;

	interrupts_setup();
	guest_printf("reset: waiting for 'q' or Ctrl-Alt-Del\n");
	for (;;) {
		while (inb(COM1 + 5) & 0x01) {
			char c = (char)inb(COM1);

			if (c == 'q') {
				guest_printf("\nreset: q pressed\n");
				return;
			}
			guest_putc(c == '\r' ? '\n' : c);
		}
		while (inb(0x64) & 0x01) {
			uint8_t sc = inb(0x60);

			if (sc == 0xe0) {
				extended = true;
				continue;
			}
			if ((sc & 0x7f) == 0x1d)
				ctrl = !(sc & 0x80);
			else if ((sc & 0x7f) == 0x38)
				alt = !(sc & 0x80);
			else if (extended && sc == 0x53 && ctrl && alt) {
				guest_printf("reset: ctrl-alt-del\n");
				return;
			}
			extended = false;
		}
		/* sti's one-instruction shadow: no interrupt slips in before the hlt. */
		__asm__ volatile("sti; hlt; cli");
	}
}

void kernel_main(struct boot_params *bp)
{
	char mode[16] = "i8042";

	guest_cmdline_get(bp, "reset", mode, sizeof(mode));
	if (guest_streq(mode, "triple")) {
		guest_printf("reset: triple fault\n");
		guest_triple_fault();
	}
	if (guest_streq(mode, "wait"))
		wait_loop();
	if (guest_streq(mode, "never")) {
		guest_printf("reset: never\n");
		for (;;)
			__asm__ volatile("cli; hlt");
	}
	guest_printf("reset: i8042\n");
}
