# Test kernels: freestanding C and assembly linked by guest.ld into bzImage files in
# $(B)/tests/guest/NAME.bzImage. Built with their own flags: never sanitized, no libc.
GUEST_KERNELS := bootinfo smp cpu-hotplug reset hello devices acpi disk-writer counter net \
	stamps virtio-mem blk-resize
GUEST_DIR := $(B)/tests/guest
GUEST_CFLAGS := -std=gnu11 -O2 -g -Wall -Wextra -Werror -ffreestanding -fno-pic -fno-pie \
	-fno-stack-protector -fno-asynchronous-unwind-tables -mno-red-zone \
	-mgeneral-regs-only -mcmodel=small -fcf-protection=none -MMD -MP
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,noexecstack \
	-Wl,--no-warn-rwx-segments
GUEST_COMMON := $(GUEST_DIR)/header.o $(GUEST_DIR)/lib.o
GUEST_IMAGES := $(patsubst %,$(GUEST_DIR)/%.bzImage,$(GUEST_KERNELS))


$(GUEST_DIR)/%.o: tests/guest/%.c
	@mkdir -p $(@D)
	$(CC) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST_DIR)/%.o: tests/guest/%.S
	@mkdir -p $(@D)
	$(CC) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST_DIR)/%.elf: $(GUEST_DIR)/%.o $(GUEST_COMMON) tests/guest/guest.ld
	$(CC) $(GUEST_LDFLAGS) -Wl,-T,tests/guest/guest.ld -o $@ $(filter %.o,$^)

# A kernel for a PVH loader, for the benchmarks that run it on QEMU: QEMU's -kernel
# enters NAME-pvh.elf at 32 bits through pvh.S, which goes on to the same 64-bit entry
# and C code as NAME.bzImage.
GUEST_PVH := hello stamps-tick
$(GUEST_DIR)/%-pvh.elf: $(GUEST_DIR)/pvh.o $(GUEST_DIR)/%.o $(GUEST_COMMON) tests/guest/pvh.ld
	$(CC) $(GUEST_LDFLAGS) -Wl,-T,tests/guest/pvh.ld -o $@ $(filter %.o,$^)

# The stamps kernel with a tick every 2^19 TSC cycles (0.2 ms at 2.5 GHz), for
# bench/snapshot: see stamps.c.
$(GUEST_DIR)/stamps-tick.o: tests/guest/stamps.c
	@mkdir -p $(@D)
	$(CC) $(GUEST_CFLAGS) -DSTAMPS_TICK=0x80000 -c -o $@ $<

# The kernels that wake other CPUs carry the AP trampoline; the kernels that drive virtio devices share
# their driver.
$(GUEST_DIR)/smp.elf $(GUEST_DIR)/cpu-hotplug.elf: $(GUEST_DIR)/smp-ap.o $(GUEST_DIR)/smp-boot.o
$(GUEST_DIR)/devices.elf $(GUEST_DIR)/disk-writer.elf $(GUEST_DIR)/net.elf \
	$(GUEST_DIR)/virtio-mem.elf $(GUEST_DIR)/blk-resize.elf: $(GUEST_DIR)/virtio.o

$(GUEST_DIR)/%.bzImage: $(GUEST_DIR)/%.elf
	objcopy -O binary $< $@

# Kept for the debugger and for incremental builds.
.SECONDARY: $(patsubst %,$(GUEST_DIR)/%.elf,$(GUEST_KERNELS) stamps-tick) $(GUEST_COMMON) \
	$(patsubst %,$(GUEST_DIR)/%.o,$(GUEST_KERNELS) stamps-tick) $(GUEST_DIR)/smp-ap.o \
	$(GUEST_DIR)/smp-boot.o $(GUEST_DIR)/virtio.o $(GUEST_DIR)/pvh.o

EXTRA_ALL += $(GUEST_IMAGES) $(GUEST_DIR)/stamps-tick.bzImage \
	$(patsubst %,$(GUEST_DIR)/%-pvh.elf,$(GUEST_PVH))
