/* A PVH entry for the test kernels the benchmarks run on QEMU (hello, stamps-tick): the
 * ELF note that has a PVH loader (QEMU's -kernel) enter at pvh_entry in 32-bit protected
 * mode with paging off, and the steps from there to the kernels' common 64-bit entry
 * (entry64 in header.S): identity-mapped page tables, long mode, a 64-bit code segment. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define EFER 0xc0000080

	.section .note.pvh, "a", @note
	.balign 4
	.long 4                 /* namesz */
	.long 4                 /* descsz */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.long pvh_entry

	.text
	.code32
	.globl pvh_entry
pvh_entry:
	cli
	cld
	mov	$pvh_pml4, %eax
	mov	%eax, %cr3
	mov	%cr4, %eax
	or	$0x20, %eax             /* PAE */
	mov	%eax, %cr4
	mov	$EFER, %ecx
	rdmsr
	or	$0x100, %eax            /* LME */
	wrmsr
	mov	%cr0, %eax
	or	$0x80000001, %eax       /* PG, PE */
	mov	%eax, %cr0
	lgdt	pvh_gdt_desc
	ljmp	$0x08, $pvh_long

	.code64
pvh_long:
	mov	$0x10, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	/* No boot_params: PVH hands over its start_info in %ebx instead. */
	xor	%esi, %esi
	jmp	entry64

	.data
	.balign 8
pvh_gdt:
	.quad 0
	.quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff        /* 0x10: data */
pvh_gdt_desc:
	.word pvh_gdt_desc - pvh_gdt - 1
	.long pvh_gdt

	/* The first GiB identity-mapped in 2 MiB pages: the kernel, its stack and COM1's
	 * code need no more. */
	.balign 4096
pvh_pml4:
	.quad pvh_pdpt + 0x3            /* present, writable */
	.fill 511, 8, 0
pvh_pdpt:
	.quad pvh_pd + 0x3
	.fill 511, 8, 0
pvh_pd:
	page = 0
	.rept 512
	.quad (page << 21) | 0x83       /* present, writable, 2 MiB */
	page = page + 1
	.endr
