# hv-svm links the shared native VMM.
hv-svm_LIBS := $(LIBVMM) $(VMM_LIBS)
hv-svm_DEPS := $(LIBVMM)
