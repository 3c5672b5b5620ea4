# proxyd — hand-written GNU Makefile.
#
#   make                 build proxyd and proxyctl in build/
#   make run             install build deps (Debian, as root), build, run on examples/quickstart.yaml
#   make check           install test deps, build, run every test; last line "N passed, N failed"
#   make install DESTDIR=...
#   make SAN=1           ASan+UBSan build in build-asan/
#   make fuzz            libFuzzer targets (clang) in build-fuzz/
#   make bench           release build, then bench/run (compares proxyd with other proxies;
#                        never part of `make check`; BENCH_ARGS=--quick for a smoke test)
#
# ./configure (from configure.ac) writes config.h and config.mk; this file runs it when needed.

SHELL := /bin/bash
.DEFAULT_GOAL := all
TOP := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
VERSION := $(shell cat $(TOP)/VERSION)

ifneq ($(filter-out deps-build deps-test clean distclean run check bench,$(or $(MAKECMDGOALS),all)),)
-include config.mk
endif

ifeq ($(SAN),1)
B ?= build-asan
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT ?= -O1 -g
else
B ?= build
SANFLAGS :=
OPT ?= -O2 -g
endif

WERROR ?=
WARN := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes \
        -Wno-unused-parameter -Wno-missing-field-initializers $(if $(WERROR),-Werror)
CFLAGS ?= $(OPT)
ALL_CFLAGS := -std=gnu11 $(WARN) $(CFLAGS) $(SANFLAGS) -pthread -fno-strict-aliasing \
              -DPROXYD_VERSION='"$(VERSION)"' -DPCRE2_CODE_UNIT_WIDTH=8 \
              -DPROXYD_SYSCONFDIR='"$(sysconfdir)"'
ALL_CPPFLAGS := -I. -Idaemon/include -include config.h $(CPPFLAGS)
ALL_LDFLAGS := $(SANFLAGS) -pthread $(LDFLAGS_CONF) $(LDFLAGS)

CORE_SRC := $(filter-out daemon/main.c,$(sort $(wildcard daemon/*.c)))
MOD_SRC := $(sort $(wildcard modules/*/*.c))
CTL_SRC := $(sort $(wildcard ctl/*.c))
LIB_OBJ := $(patsubst %.c,$(B)/%.o,$(CORE_SRC) $(MOD_SRC))
CTL_OBJ := $(patsubst %.c,$(B)/%.o,$(CTL_SRC)) $(B)/daemon/ctlpath.o
UNIT_SRC := $(sort $(shell find tests/unit -name '*_test.c' 2>/dev/null))
UNIT_BIN := $(patsubst %.c,$(B)/%,$(UNIT_SRC))
DEPS := $(shell find $(B) -name '*.d' 2>/dev/null)

all: $(B)/proxyd $(B)/proxyctl

configure: configure.ac VERSION
	autoconf && autoheader && touch configure

config.h.in: configure
config.h config.mk: configure config.mk.in config.h.in
	./configure -q

$(B)/%.o: %.c config.h
	@mkdir -p $(@D)
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/libproxyd.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/proxyd: $(B)/daemon/main.o $(B)/libproxyd.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(B)/proxyctl: $(CTL_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^

# A unit test may #include the .c it tests; it links against everything else.
$(B)/tests/unit/%_test: tests/unit/%_test.c $(B)/libproxyd.a tests/unit/tap.h config.h
	@mkdir -p $(@D)
	$(CC) $(ALL_CPPFLAGS) -Itests/unit $(ALL_CFLAGS) -MMD -MP -o $@ $< $(B)/libproxyd.a \
	    $(ALL_LDFLAGS) $(LIBS)

unit: $(UNIT_BIN)

# ---- fuzzing (clang + libFuzzer); the corpora are replayed by `make check` ----
FUZZ_SRC := $(sort $(wildcard tests/fuzz/*_fuzz.c))
FUZZ_B := build-fuzz
FUZZ_FLAGS := -fsanitize=fuzzer,address,undefined -g -O1
FUZZ_LIB := $(patsubst %.c,$(FUZZ_B)/%.o,$(CORE_SRC) $(MOD_SRC))
$(FUZZ_B)/%.o: %.c config.h
	@mkdir -p $(@D)
	clang $(ALL_CPPFLAGS) -std=gnu11 -DPCRE2_CODE_UNIT_WIDTH=8 -DPROXYD_VERSION='"$(VERSION)"' \
	    -DFUZZING -fsanitize=fuzzer-no-link,address,undefined -g -O1 -MMD -MP -c -o $@ $<
$(FUZZ_B)/libproxyd.a: $(FUZZ_LIB)
	@rm -f $@
	ar rcs $@ $^
# a target pulls only the objects it uses out of the library
$(FUZZ_B)/%_fuzz: tests/fuzz/%_fuzz.c $(FUZZ_B)/libproxyd.a
	clang $(ALL_CPPFLAGS) -std=gnu11 -DPCRE2_CODE_UNIT_WIDTH=8 $(FUZZ_FLAGS) -o $@ $^ $(LIBS)
fuzz: $(patsubst tests/fuzz/%.c,$(FUZZ_B)/%,$(FUZZ_SRC))

# ---- the two README commands ----
deps-build:
	@tools/deps.sh build
deps-test:
	@tools/deps.sh test

run: deps-build
	@$(MAKE) --no-print-directory all
	$(B)/proxyd -c examples/quickstart.yaml -C $(TOP)/$(B)/run -v

check: deps-test
	@$(MAKE) --no-print-directory all unit WERROR=1
	@$(MAKE) --no-print-directory all unit SAN=1 WERROR=1
	@$(MAKE) --no-print-directory fuzz WERROR=1
	@tests/run

# ---- benchmarks: bench/README.md (not part of `make check`) ----
BENCH_ARGS ?=
bench: deps-build
	@$(MAKE) --no-print-directory all SAN=0
	bench/run --proxyd $(TOP)/build/proxyd $(BENCH_ARGS)

# ---- install ----
# directories come from ./configure (--prefix, --sysconfdir, ...); a Debian package
# configures --prefix=/usr --sysconfdir=/etc
DESTDIR ?=
prefix ?= /usr/local
sbindir ?= $(prefix)/sbin
bindir ?= $(prefix)/bin
mandir ?= $(prefix)/share/man
sysconfdir ?= $(prefix)/etc
install: all
	install -d $(DESTDIR)$(sbindir) $(DESTDIR)$(bindir) $(DESTDIR)$(mandir)/man5 \
	    $(DESTDIR)$(mandir)/man8 $(DESTDIR)$(sysconfdir)/proxyd \
	    $(DESTDIR)$(prefix)/share/doc/proxyd/examples
	install -m 755 $(B)/proxyd $(DESTDIR)$(sbindir)/proxyd
	install -m 755 $(B)/proxyctl $(DESTDIR)$(bindir)/proxyctl
	install -m 644 man/proxyd.8 man/proxyctl.8 $(DESTDIR)$(mandir)/man8/
	install -m 644 man/proxyd.yaml.5 $(DESTDIR)$(mandir)/man5/
	install -m 644 etc/main.yaml $(DESTDIR)$(sysconfdir)/proxyd/main.yaml
	install -m 644 examples/*.yaml $(DESTDIR)$(prefix)/share/doc/proxyd/examples/

clean:
	rm -rf build build-asan build-fuzz
distclean: clean
	rm -rf configure config.h config.h.in config.mk config.log config.status autom4te.cache

.PHONY: all unit fuzz run check bench install clean distclean deps-build deps-test
.DELETE_ON_ERROR:

-include $(DEPS)
