# The seed writer the boot tests drive (tests/lib/seed-write.c).
$(B)/tests/lib/seed-write: $(B)/tests/lib/seed-write.o $(LIBVI)
	$(say) LINK $@
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
EXTRA_ALL += $(B)/tests/lib/seed-write
