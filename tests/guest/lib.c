/* The test kernels' runtime: COM1 output with a small printf, command-line lookup,
 * reset and triple fault. */
#include "guest.h"

#define COM1 0x3f8
#define COM1_LSR (COM1 + 5)
#define LSR_THRE 0x20

static volatile int print_lock;

void guest_lock(void)
{
	while (__atomic_exchange_n(&print_lock, 1, __ATOMIC_ACQUIRE))
		cpu_relax();
}

void guest_unlock(void)
{
	__atomic_store_n(&print_lock, 0, __ATOMIC_RELEASE);
}

void guest_putc(char c)
{
	if (c == '\n')
		guest_putc('\r');
	while (!(inb(COM1_LSR) & LSR_THRE))
		cpu_relax();
	outb(COM1, (uint8_t)c);
}

static void put_str(const char *s)
{
	while (*s)
		guest_putc(*s++);
}

static void put_num(uint64_t v, unsigned base, unsigned width, char pad)
{
	char buf[24];
	unsigned n = 0;

	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n < width && n < sizeof(buf))
		buf[n++] = pad;
	while (n)
		guest_putc(buf[--n]);
}

/* %s %c %d %u %x with l/ll and a zero-padded width: what the kernels print. */
void guest_printf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	for (; *fmt; fmt++) {
		unsigned width = 0, longs = 0;
		char pad = ' ';
		uint64_t u;

		if (*fmt != '%') {
			guest_putc(*fmt);
			continue;
		}
		fmt++;
		if (*fmt == '0')
			pad = '0';
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (unsigned)(*fmt++ - '0');
		while (*fmt == 'l') {
			longs++;
			fmt++;
		}
		switch (*fmt) {
		case 's':
			put_str(va_arg(ap, const char *));
			break;
		case 'c':
			guest_putc((char)va_arg(ap, int));
			break;
		case 'd': {
			int64_t d = longs ? va_arg(ap, int64_t) : va_arg(ap, int);

			if (d < 0) {
				guest_putc('-');
				u = (uint64_t)-d;
			} else {
				u = (uint64_t)d;
			}
			put_num(u, 10, width, pad);
			break;
		}
		case 'u':
		case 'x':
			u = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
			put_num(u, *fmt == 'u' ? 10 : 16, width, pad);
			break;
		default:
			guest_putc('%');
			guest_putc(*fmt);
			break;
		}
	}
	va_end(ap);
}

size_t guest_strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

bool guest_streq(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

/* The compiler may emit calls to these two even in freestanding code. */
void *memcpy(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *s = src;

	while (n--)
		*d++ = *s++;
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	uint8_t *d = dst;

	while (n--)
		*d++ = (uint8_t)c;
	return dst;
}

bool guest_cmdline_get(const struct boot_params *bp, const char *key, char *buf, size_t len)
{
	const char *p = (const char *)(uintptr_t)bp->hdr.cmd_line_ptr;
	size_t klen = guest_strlen(key);

	if (!p)
		return false;
	while (*p) {
		size_t i;

		while (*p == ' ')
			p++;
		for (i = 0; i < klen && p[i] == key[i]; i++)
			;
		if (i == klen && (p[i] == '=' || p[i] == ' ' || !p[i])) {
			size_t n = 0;

			p += klen + (p[i] == '=');
			while (*p && *p != ' ' && n + 1 < len)
				buf[n++] = *p++;
			buf[n] = '\0';
			return true;
		}
		while (*p && *p != ' ')
			p++;
	}
	return false;
}

uint64_t guest_parse_u64(const char *s)
{
	uint64_t v = 0;

	while (*s >= '0' && *s <= '9')
		v = v * 10 + (uint64_t)(*s++ - '0');
	return v;
}

void guest_reset(void)
{
	/* Wait for the controller's input buffer, then pulse the reset line. */
	while (inb(0x64) & 0x02)
		cpu_relax();
	outb(0x64, 0xfe);
	for (;;)
		__asm__ volatile("cli; hlt");
}

void guest_triple_fault(void)
{
	static const struct __attribute__((packed)) {
		uint16_t limit;
		uint64_t base;
	} empty = { 0, 0 };

	/* With no IDT the invalid-opcode fault cannot be delivered, nor the faults that
	 * follow. */
	__asm__ volatile("lidt %0; ud2" : : "m"(empty));
	for (;;)
		__asm__ volatile("cli; hlt");
}
