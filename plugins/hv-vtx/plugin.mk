# hv-vtx links the shared native VMM.
hv-vtx_LIBS := $(LIBVMM) $(VMM_LIBS)
hv-vtx_DEPS := $(LIBVMM)
