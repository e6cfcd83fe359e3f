# lib/virt's console logger, linked in directly (as hv-virt-xml does).
$(B)/tests/unit/virt-console-log.o: CFLAGS += $(VIRT_CFLAGS)
$(B)/tests/unit/virt-console-log: $(LIBVIRT_GLUE)
$(B)/tests/unit/virt-console-log: UNIT_LIBS += $(LIBVIRT_GLUE) $(LIBVI) $(VIRT_LIBS)
