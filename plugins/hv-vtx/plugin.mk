# hv-vtx links the shared native VMM.
hv-vtx_LIBS := $(LIBVMM)
hv-vtx_DEPS := $(LIBVMM)
