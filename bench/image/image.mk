# bench/image: the lib/image side of the qemu-img bench comparison.
$(B)/bench/image/image-bench: $(B)/bench/image/image-bench.o $(LIBVI)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

EXTRA_ALL += $(B)/bench/image/image-bench
