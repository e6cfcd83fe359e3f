# bench/snapshot: the snapshot benchmark's QMP client, in $(B)/bench/snapshot/.
SNAPSHOT_BENCH_DIR := $(B)/bench/snapshot

$(SNAPSHOT_BENCH_DIR)/qemu-save: $(SNAPSHOT_BENCH_DIR)/qemu-save.o
	$(CC) $(LDFLAGS) -o $@ $^ $(shell $(PKG_CONFIG) --libs json-c)

EXTRA_ALL += $(SNAPSHOT_BENCH_DIR)/qemu-save
