/* The AP trampoline, copied to 0x8000 and started there by SIPI vector 8: real mode to
 * long mode on the boot CPU's page tables, then on to ap_entry in the kernel. */
#define TRAMPOLINE 0x8000
#define ABS(x) (TRAMPOLINE + (x) - trampoline_start)

	.section .rodata, "a"
	.code16
	.globl trampoline_start, trampoline_end, tr_cr3, tr_entry
trampoline_start:
	cli
	mov	%cs, %ax
	mov	%ax, %ds
	lgdtl	(tr_gdtr - trampoline_start)
	mov	%cr4, %eax
	or	$0x20, %eax             /* PAE */
	mov	%eax, %cr4
	mov	(tr_cr3 - trampoline_start), %eax
	mov	%eax, %cr3
	mov	$0xc0000080, %ecx
	rdmsr
	or	$0x100, %eax            /* EFER.LME */
	wrmsr
	mov	%cr0, %eax
	or	$0x80000001, %eax       /* PG | PE */
	mov	%eax, %cr0
	ljmpl	$0x10, $ABS(tr_long)

	.code64
tr_long:
	mov	$0x18, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	jmp	*ABS(tr_entry)

	.balign 8
tr_gdt:
	.quad 0, 0, 0x00af9b000000ffff, 0x00cf93000000ffff
tr_gdtr:
	.word tr_gdtr - tr_gdt - 1
	.long ABS(tr_gdt)
tr_cr3:
	.long 0
	.balign 8
tr_entry:
	.quad 0
trampoline_end:

	.text
	.code64
	.globl ap_entry
	/* One stack per APIC ID, then C. */
ap_entry:
	mov	$1, %eax
	cpuid
	shr	$24, %ebx
	inc	%ebx
	shl	$12, %rbx
	lea	ap_stacks(%rip), %rsp
	add	%rbx, %rsp
	call	ap_main
	ud2
