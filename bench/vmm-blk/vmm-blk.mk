# bench/vmm-blk: the virtio-blk back end driven from the host, in $(B)/bench/vmm-blk/.
VMM_BLK_DIR := $(B)/bench/vmm-blk

$(VMM_BLK_DIR)/vmm-blk: $(VMM_BLK_DIR)/vmm-blk.o $(LIBVMM) $(LIBVI)
	$(CC) $(LDFLAGS) -o $@ $^ $(VMM_LIBS) $(shell $(PKG_CONFIG) --libs json-c zlib)

EXTRA_ALL += $(VMM_BLK_DIR)/vmm-blk
