/* The bzImage setup header (boot protocol 2.15) and the entry points of every test
 * kernel. A loader using the 64-bit entry lands in entry64; one that starts the real-mode
 * setup prints the kernel's realmode_banner on COM1 and stops the machine. */
#define COM1 0x3f8

	.section .setup, "ax"
	.code16
	.org 0x1f1
	.byte 1                 /* setup_sects: one sector after the boot sector */
	.word 0                 /* root_flags */
	.long _syssize          /* syssize */
	.word 0                 /* ram_size */
	.word 0xffff            /* vid_mode */
	.word 0                 /* root_dev */
	.word 0xaa55            /* boot_flag */
	.byte 0xeb, realmode_entry - 0x202 /* jump over the header; also gives its end */
	.ascii "HdrS"
	.word 0x020f            /* version 2.15 */
	.long 0                 /* realmode_swtch */
	.word 0                 /* start_sys_seg */
	.word 0                 /* kernel_version */
	.byte 0                 /* type_of_loader */
	.byte 0x01              /* loadflags: LOADED_HIGH */
	.word 0                 /* setup_move_size */
	.long 0x100000          /* code32_start */
	.long 0                 /* ramdisk_image */
	.long 0                 /* ramdisk_size */
	.long 0                 /* bootsect_kludge */
	.word 0                 /* heap_end_ptr */
	.byte 0                 /* ext_loader_ver */
	.byte 0                 /* ext_loader_type */
	.long 0                 /* cmd_line_ptr */
	.long 0x7fffffff        /* initrd_addr_max */
	.long 0x200000          /* kernel_alignment */
	.byte 0                 /* relocatable_kernel */
	.byte 0                 /* min_alignment */
	.word 0x0001            /* xloadflags: XLF_KERNEL_64 */
	.long 2047              /* cmdline_size */
	.long 0                 /* hardware_subarch */
	.quad 0                 /* hardware_subarch_data */
	.long 0                 /* payload_offset */
	.long 0                 /* payload_length */
	.quad 0                 /* setup_data */
	.quad 0x100000          /* pref_address */
	.long _init_size        /* init_size */
	.long 0                 /* handover_offset */
	.long 0                 /* kernel_info_offset */

	/* Entered with CS at the setup's 0x200: data offsets count from there. */
realmode_entry:
	cli
	mov	%cs, %ax
	mov	%ax, %ds
	mov	$(realmode_banner - 0x200), %si
	mov	$COM1, %dx
1:	lodsb
	test	%al, %al
	jz	2f
	out	%al, %dx
	jmp	1b
	/* Stop the machine: through QEMU's isa-debug-exit port where there is one, else
	 * with an exception no vector of an empty IVT can take, which shuts the CPU down. */
2:	mov	$0xf4, %dx
	out	%al, %dx
	lidt	(zero_idtr - 0x200)
	ud2
zero_idtr:
	.word 0
	.long 0

	.section .text.head, "ax"
	.code32
	.globl entry32
entry32:
	/* code32_start: the 32-bit protocol is not offered. */
	ud2

	.org 0x200
	.code64
	.globl entry64
entry64:
	cli
	cld
	/* Record the state the loader handed over before anything changes it. */
	mov	%cs, boot_cs(%rip)
	mov	%ds, boot_ds(%rip)
	mov	%ss, boot_ss(%rip)
	lea	boot_stack_top(%rip), %rsp
	pushfq
	popq	boot_rflags(%rip)
	mov	%rsi, %rbx
	lea	__bss_start(%rip), %rdi
	lea	__bss_end(%rip), %rcx
	sub	%rdi, %rcx
	xor	%eax, %eax
	rep stosb
	mov	%rbx, %rdi
	call	kernel_main
	call	guest_reset
	ud2

	.data
	.globl boot_cs, boot_ds, boot_ss, boot_rflags
boot_cs:	.word 0
boot_ds:	.word 0
boot_ss:	.word 0
	.balign 8
boot_rflags:	.quad 0

	.section .stack, "aw", @nobits
	.balign 16
	.space 16384
boot_stack_top:
