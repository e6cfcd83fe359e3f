# vi: one non-recursive Makefile.
#
#   make            build vi, its plugins and the test programs into $(B)/
#   make check      set up the host (scripts/setup), build, run every test
#   make check-slow the tests that do not fit in check
#   make bench      benchmarks against their peers, printing ratios
#   make demo       set up, build and run the main job
#   make install    PREFIX=/usr/local DESTDIR=
#   make SANITIZE=1 ...   the same with ASan and UBSan (in build-san/)
#
# New files need no edits here: lib/*.c and lib/image/*.c join libvi,
# lib/vmm/*.c libvmm, lib/virt/*.c libvirt-glue, lib/tools/*.c the image
# tools module vi-tools.so, cmd/*.c the vi binary, plugins/hv-NAME/*.c the
# plugin hv-NAME.so (extra libraries in plugins/hv-NAME/plugin.mk),
# tests/unit/*.c one test program each, tests/plugins/*.c one fixture plugin
# each, tests/fuzz/fuzz-*.c one libFuzzer target each.

VERSION := 0.1.0

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
SYSTEMDUNITDIR ?= $(LIBDIR)/systemd/system
PLUGINDIR := $(LIBDIR)/vi/plugins
TOOLSDIR := $(LIBDIR)/vi
TEMPLATEDIR := $(DATADIR)/vi/templates
# Each also relative to BINDIR, so that a staged install (DESTDIR) finds its
# own files before the installed ones.
from_bin = $(shell realpath -m --relative-to=$(BINDIR) $(1))

ifeq ($(SANITIZE),1)
B ?= build-san
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1
# Programs that may load the libvirt plugins get libvirt loaded at start in
# sanitizer builds: ASan resolves its XDR interceptors once, at start (a later
# libtirpc leaves libvirt's RPC calling a null interceptor), and this
# LeakSanitizer misreads the dynamic TLS of libraries loaded later
# ("Tracer caught signal 11").
SAN_LIBS = -Wl,--push-state,--no-as-needed \
	$(shell $(PKG_CONFIG) --libs libvirt libxml-2.0 2>/dev/null) -ltirpc -Wl,--pop-state
else
B ?= build
SAN :=
OPT := -O2
endif

CC ?= cc
PKG_CONFIG ?= pkg-config
PKGS := json-c yaml-0.1 zlib
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
# Only vi-tools.so links these: loading them costs every program ~18 ms.
TOOLS_PKGS := libguestfs libarchive
TOOLS_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(TOOLS_PKGS) 2>/dev/null)
TOOLS_LIBS := $(shell $(PKG_CONFIG) --libs $(TOOLS_PKGS) 2>/dev/null)

CPPFLAGS += -D_GNU_SOURCE -Iinclude -iquote lib \
	-DVI_VERSION='"$(VERSION)"' \
	-DVI_PLUGIN_DIR_DEFAULT='"$(PLUGINDIR)"' \
	-DVI_PLUGIN_DIR_FROM_BIN='"$(call from_bin,$(PLUGINDIR))"' \
	-DVI_TOOLS_DIR_DEFAULT='"$(TOOLSDIR)"' \
	-DVI_TOOLS_DIR_FROM_BIN='"$(call from_bin,$(TOOLSDIR))"' \
	-DVI_MAN_DIR_DEFAULT='"$(MANDIR)"' \
	-DVI_MAN_DIR_FROM_BIN='"$(call from_bin,$(MANDIR))"' \
	-DVI_TEMPLATE_DIR_DEFAULT='"$(TEMPLATEDIR)"' \
	-DVI_TEMPLATE_DIR_FROM_BIN='"$(call from_bin,$(TEMPLATEDIR))"'
CFLAGS ?= -g $(OPT)
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-missing-field-initializers -fPIC -pthread $(SAN) $(PKG_CFLAGS)
LDFLAGS += -pthread $(SAN)
LDLIBS += $(PKG_LIBS) -ldl -lm $(SAN_LIBS)

LIB_SRC := $(wildcard lib/*.c lib/image/*.c)
VMM_SRC := $(wildcard lib/vmm/*.c)
VIRT_SRC := $(wildcard lib/virt/*.c)
PLUGIN_HOST_SRC := $(wildcard lib/plugin/*.c)
TOOLS_SRC := $(wildcard lib/tools/*.c)
CMD_SRC := $(wildcard cmd/*.c)
UNIT_SRC := $(wildcard tests/unit/*.c)
FIXTURE_SRC := $(wildcard tests/plugins/*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz-*.c)
PLUGIN_DIRS := $(wildcard plugins/hv-*)

obj = $(patsubst %.c,$(B)/%.o,$(1))

LIBVI := $(B)/libvi.a
LIBVMM := $(B)/libvmm.a
# What libvmm's users link besides it: libslirp is loaded at run time, by the first
# user NIC (its header needs none of glib's flags).
VMM_LIBS := -ldl
LIBVIRT_GLUE := $(B)/libvirt-glue.a
LIBVI_PLUGIN := $(B)/libvi-plugin.a
VI := $(B)/vi
TOOLS := $(B)/vi-tools.so
PLUGINS := $(patsubst plugins/%,$(B)/plugins/%.so,$(PLUGIN_DIRS))
UNIT_TESTS := $(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(UNIT_SRC))
FIXTURES := $(patsubst tests/plugins/%.c,$(B)/tests/plugins/%.so,$(FIXTURE_SRC))
FUZZERS := $(patsubst tests/fuzz/%.c,$(B)/tests/fuzz/%,$(FUZZ_SRC))

# Per-plugin extra objects and libraries: plugins/hv-NAME/plugin.mk sets
# hv-NAME_LIBS (archives and -l flags) and may add to PKGS_hv-NAME.
# Fragments under tests/ and bench/ (tests/guest/guest.mk...) may add build
# rules and append their outputs to EXTRA_ALL.
.DEFAULT_GOAL := all
EXTRA_ALL :=
-include $(wildcard plugins/*/plugin.mk)
-include $(wildcard tests/*/*.mk bench/*/*.mk)

all: $(VI) $(TOOLS) $(PLUGINS) $(UNIT_TESTS) $(FIXTURES) $(EXTRA_ALL)

# V=1 shows whole command lines.
ifeq ($(V),1)
Q :=
say = @:
else
Q := @
say = @printf '  %-6s %s\n'
endif

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(say) CC $@
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(LIBVI): $(call obj,$(LIB_SRC))
	@mkdir -p $(@D)
	$(say) AR $@
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(LIBVMM): $(call obj,$(VMM_SRC))
	@mkdir -p $(@D)
	$(say) AR $@
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(LIBVI_PLUGIN): $(call obj,$(PLUGIN_HOST_SRC))
	@mkdir -p $(@D)
	$(say) AR $@
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(LIBVIRT_GLUE): $(call obj,$(VIRT_SRC))
	@mkdir -p $(@D)
	$(say) AR $@
	$(Q)rm -f $@ && $(AR) rcs $@ $^

# vi exports all of libvi (-rdynamic, --whole-archive) for vi-tools.so.
$(VI): $(call obj,$(CMD_SRC)) $(LIBVI)
	$(say) LINK $@
	$(Q)$(CC) $(LDFLAGS) -rdynamic -o $@ $(filter %.o,$^) \
		-Wl,--whole-archive $(LIBVI) -Wl,--no-whole-archive $(LDLIBS)

# The image tools module: libvi's symbols come from the vi that loads it, so
# its error state is vi's; it exports one symbol (VI_TOOLS_SYMBOL).
$(TOOLS): $(call obj,$(TOOLS_SRC))
	$(say) LINK $@
	$(Q)$(CC) $(LDFLAGS) -shared -o $@ $^ $(TOOLS_LIBS)

$(B)/lib/tools/%.o: CFLAGS += $(TOOLS_CFLAGS) -fvisibility=hidden

# Plugins: hidden visibility, one exported symbol (VI_HV_EXPORT). libvi's
# error and log functions come from libvi-plugin.a, which forwards to the host.
.SECONDEXPANSION:
$(B)/plugins/%.so: $$(call obj,$$(wildcard plugins/%/*.c)) $$($$*_DEPS) $(LIBVI_PLUGIN) $(LIBVI)
	@mkdir -p $(@D)
	$(say) LINK $@
	$(Q)$(CC) $(LDFLAGS) -shared -fvisibility=hidden -Wl,--exclude-libs,ALL -o $@ \
		$(filter %.o,$^) $($*_LIBS) $(LIBVI_PLUGIN) $(LIBVI) $(LDLIBS)

$(B)/plugins/%.o: CFLAGS += -fvisibility=hidden

$(B)/tests/plugins/%.so: tests/plugins/%.c tests/plugins/fixture.h include/vi/hv-plugin.h
	@mkdir -p $(@D)
	$(say) CC $@
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -fvisibility=hidden -shared $(LDFLAGS) -o $@ $<

$(B)/tests/unit/%: $(B)/tests/unit/%.o $(LIBVMM) $(LIBVI)
	$(say) LINK $@
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(UNIT_LIBS) $(VMM_LIBS) $(LDLIBS)

# libFuzzer targets need clang; they build the library sources in directly.
FUZZ_CC ?= clang
$(B)/tests/fuzz/%: tests/fuzz/%.c $(LIB_SRC)
	@mkdir -p $(@D)
	$(say) FUZZ $@
	$(Q)$(FUZZ_CC) $(CPPFLAGS) -std=gnu11 -g -O1 $(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined \
		-o $@ $^ $(PKG_LIBS) $(UNIT_LIBS) -ldl -lm -pthread

# Targets of lib/vmm code take just that file.
$(B)/tests/fuzz/fuzz-dhcp: lib/vmm/net-dhcp.c

fuzz: $(FUZZERS)

# --- checks -------------------------------------------------------------

setup:
	@scripts/setup

# check = set-up, then build, then every test; the runner prints the summary.
check:
	@scripts/setup
	@$(MAKE) --no-print-directory all fuzz
	@VI_BUILD=$(B) tests/run

check-slow:
	@scripts/setup
	@$(MAKE) --no-print-directory all
	@VI_BUILD=$(B) VI_SLOW=1 tests/run tests/slow

bench:
	@scripts/setup
	@$(MAKE) --no-print-directory all
	@VI_BUILD=$(B) bench/run

demo:
	@scripts/setup
	@$(MAKE) --no-print-directory all
	@VI_BUILD=$(B) scripts/demo

# --- install ------------------------------------------------------------

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PLUGINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(TEMPLATEDIR) \
		$(DESTDIR)$(DATADIR)/bash-completion/completions \
		$(DESTDIR)$(DATADIR)/zsh/vendor-completions
	install -m 0755 $(VI) $(DESTDIR)$(BINDIR)/vi
	install -m 0755 $(TOOLS) $(DESTDIR)$(TOOLSDIR)/
	$(if $(PLUGINS),install -m 0755 $(PLUGINS) $(DESTDIR)$(PLUGINDIR)/)
	install -m 0644 $(wildcard man/*.1) $(DESTDIR)$(MANDIR)/man1/
	$(if $(wildcard man/*.5),install -m 0644 $(wildcard man/*.5) $(DESTDIR)$(MANDIR)/man5/)
	$(if $(wildcard templates/*.yaml),install -m 0644 $(wildcard templates/*.yaml) $(DESTDIR)$(TEMPLATEDIR)/)
	install -m 0644 completion/vi.bash $(DESTDIR)$(DATADIR)/bash-completion/completions/vi
	install -m 0644 completion/_vi $(DESTDIR)$(DATADIR)/zsh/vendor-completions/_vi
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	sed 's|@BINDIR@|$(BINDIR)|' dist/vi-policy.service.in >$(DESTDIR)$(SYSTEMDUNITDIR)/vi-policy.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/vi-policy.service

clean:
	rm -rf build build-san

.PHONY: all check check-slow bench demo install clean setup fuzz

-include $(shell find $(B) -name '*.d' 2>/dev/null)
