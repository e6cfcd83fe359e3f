# bench/vmm-start: the start-up benchmark's programs, in $(B)/bench/vmm-start/.
VMM_START_DIR := $(B)/bench/vmm-start
VMM_START_PROGS := $(VMM_START_DIR)/vmm-boot $(VMM_START_DIR)/kvm-floor $(VMM_START_DIR)/measure

# Only what it uses: each shared library costs start-up time, which is what we measure.
$(VMM_START_DIR)/vmm-boot: $(VMM_START_DIR)/vmm-boot.o $(LIBVMM) $(LIBVI)
	$(CC) $(LDFLAGS) -o $@ $^ $(VMM_LIBS) $(shell $(PKG_CONFIG) --libs json-c zlib)

$(VMM_START_DIR)/kvm-floor: $(VMM_START_DIR)/kvm-floor.o
	$(CC) $(LDFLAGS) -o $@ $^

$(VMM_START_DIR)/measure: $(VMM_START_DIR)/measure.o
	$(CC) $(LDFLAGS) -o $@ $^

EXTRA_ALL += $(VMM_START_PROGS)
