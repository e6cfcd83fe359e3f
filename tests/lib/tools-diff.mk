# The diff driver of tests/slow/tools-diff.bats (tests/lib/tools-diff.c). It loads
# vi-tools.so as vi does, so it exports all of libvi as vi does.
$(B)/tests/lib/tools-diff: $(B)/tests/lib/tools-diff.o $(LIBVI) | $(TOOLS)
	$(say) LINK $@
	$(Q)$(CC) $(LDFLAGS) -rdynamic -o $@ $(filter %.o,$^) \
		-Wl,--whole-archive $(LIBVI) -Wl,--no-whole-archive $(LDLIBS)
EXTRA_ALL += $(B)/tests/lib/tools-diff
