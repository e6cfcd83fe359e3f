# hv-svm links the shared native VMM.
hv-svm_LIBS := $(LIBVMM)
hv-svm_DEPS := $(LIBVMM)
