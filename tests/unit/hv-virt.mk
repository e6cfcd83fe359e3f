# The libvirt backend tests: hv-virt-xml links lib/virt itself; the others load
# the plugins as the host does, so those must be built first.
$(B)/tests/unit/hv-virt-xml.o: CFLAGS += $(VIRT_CFLAGS)
$(B)/tests/unit/hv-virt-xml: $(LIBVIRT_GLUE)
$(B)/tests/unit/hv-virt-xml: UNIT_LIBS += $(LIBVIRT_GLUE) $(LIBVI) $(VIRT_LIBS)
$(B)/tests/unit/hv-virt-qemu: | $(B)/plugins/hv-qemu.so
$(B)/tests/unit/hv-virt-xen: | $(B)/plugins/hv-xen.so

$(B)/tests/unit/hv-virt-save: | $(B)/plugins/hv-qemu.so
