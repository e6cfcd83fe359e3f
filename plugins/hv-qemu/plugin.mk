# hv-qemu: libvirt's QEMU driver through lib/virt. The libvirt and libxml2
# flags of lib/virt are set here for both libvirt backends (libvirt-qemu:
# the monitor, for the forwards of user NICs).
VIRT_CFLAGS := $(shell $(PKG_CONFIG) --cflags libvirt libvirt-qemu libxml-2.0)
VIRT_LIBS := $(shell $(PKG_CONFIG) --libs libvirt libvirt-qemu libxml-2.0)

$(B)/lib/virt/%.o: CFLAGS += $(VIRT_CFLAGS)
$(B)/plugins/hv-qemu/%.o: CFLAGS += $(VIRT_CFLAGS)
hv-qemu_LIBS = $(LIBVIRT_GLUE) $(VIRT_LIBS)
hv-qemu_DEPS = $(LIBVIRT_GLUE)
