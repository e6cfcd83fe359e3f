# hv-xen: libvirt's libxl driver through lib/virt (flags from hv-qemu's plugin.mk).
$(B)/plugins/hv-xen/%.o: CFLAGS += $(VIRT_CFLAGS)
hv-xen_LIBS = $(LIBVIRT_GLUE) $(VIRT_LIBS)
hv-xen_DEPS = $(LIBVIRT_GLUE)
