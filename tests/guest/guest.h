/* The little runtime the test kernels share: port I/O, COM1 output, a small printf,
 * the command line, and the ways to end the machine. */
#ifndef VI_GUEST_H
#define VI_GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <asm/bootparam.h>

/* Each kernel defines this: what a loader entering the real-mode setup sees on COM1. */
#define REALMODE_BANNER(s) \
	__attribute__((section(".setup.banner"), used)) const char realmode_banner[] = s

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint16_t inw(uint16_t port)
{
	uint16_t v;

	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

/* State at the 64-bit entry, saved by header.S. */
extern uint16_t boot_cs, boot_ds, boot_ss;
extern uint64_t boot_rflags;

void kernel_main(struct boot_params *bp);

void guest_putc(char c);
void guest_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Serialises output of several CPUs. */
void guest_lock(void);
void guest_unlock(void);

size_t guest_strlen(const char *s);
bool guest_streq(const char *a, const char *b);
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
/* The value of "key=value" on the command line, copied into buf ("" for a bare
 * "key"); false when absent. */
bool guest_cmdline_get(const struct boot_params *bp, const char *key, char *buf, size_t len);
uint64_t guest_parse_u64(const char *s);

/* Ways out: a reset through the i8042, or a triple fault. */
__attribute__((noreturn)) void guest_reset(void);
__attribute__((noreturn)) void guest_triple_fault(void);

/* Other CPUs (smp-boot.c, with the trampoline of smp-ap.S): a kernel that wakes them
 * defines ap_stacks (AP_STACK bytes for each APIC ID, from 0) and ap_main(), where each
 * woken CPU goes on its own stack. */
#define AP_STACK 4096
#define ICR_ALL_BUT_SELF (3u << 18) /* the destination shorthand */
void ap_main(void);
unsigned apic_id(void);
/* Installs the trampoline and enables the local APIC. */
void smp_init(void);
/* INIT-SIPI-SIPI to the CPUs that `shorthand` (0: the APIC ID dest) names. */
void smp_wake(uint32_t shorthand, unsigned dest);

#endif
