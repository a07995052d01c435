# pglease — see README.md. `make` builds ./pglease; `make run`, `make test`, `make bench`, `make bench-ab REV=`,
# `make install` / `make uninstall` (systemd/install.mk).
CC      ?= cc
PKGS    := libpq inih libssl libcrypto
# libsystemd (sd_notify, socket activation) when present; `make clean; make HAVE_SYSTEMD=` builds without it.
HAVE_SYSTEMD := $(shell pkg-config --exists libsystemd 2>/dev/null && echo 1)
ifeq ($(HAVE_SYSTEMD),1)
PKGS    += libsystemd
CPPFLAGS += -DHAVE_LIBSYSTEMD
endif
# libmicrohttpd serves metrics_listen (Prometheus); without it that key is refused at start.
HAVE_MHD := $(shell pkg-config --exists libmicrohttpd 2>/dev/null && echo 1)
ifeq ($(HAVE_MHD),1)
PKGS    += libmicrohttpd
CPPFLAGS += -DHAVE_LIBMICROHTTPD
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

VERSION := 0.1.0
CPPFLAGS += -D_GNU_SOURCE -DPGLEASE_VERSION='"$(VERSION)"' $(PKG_CFLAGS)
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -Wall -Wextra -Werror -MMD -MP
LDLIBS  := $(PKG_LIBS) -lev -lpthread

SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# Layers, lowest first: base/ (lists, buffers, framing, protocol builders, logging, the worker thread),
# conf/ (the INI), pool/ (the object model), daemon/ (the front end). Each sees only its own folder and
# those below, so an upward include does not compile; tests/<layer>/ sees what <layer> sees.
INC_base   := -Ibase
INC_conf   := -Iconf $(INC_base)
INC_pool   := -Ipool $(INC_conf)
INC_daemon := -Idaemon $(INC_pool)
layer_inc = $(INC_$(firstword $(subst /, ,$(1))))
test_inc  = $(INC_$(word 2,$(subst /, ,$(1))))

SRCS     := $(wildcard base/*.c conf/*.c pool/*.c daemon/*.c)
LIB_SRCS := $(filter-out daemon/main.c,$(SRCS))
UNIT_SRCS := $(wildcard tests/base/*.c tests/conf/*.c tests/pool/*.c tests/daemon/*.c)

OBJS      := $(SRCS:%.c=build/%.o)
LIB_OBJS  := $(LIB_SRCS:%.c=build/%.o)
SAN_OBJS  := $(SRCS:%.c=build/asan/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/%.c=build/tests/%)

PY := /usr/bin/python3

.PHONY: all deps run test unit fuzz integration integration-asan torture torture-asan clients clients-asan bench bench-ab clean
all: pglease

pglease: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

build/pglease-asan: $(SAN_OBJS)
	$(CC) $(CFLAGS) $(SAN_FLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

build/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(call layer_inc,$<) $(CFLAGS) -c -o $@ $<

build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(call layer_inc,$<) $(CFLAGS) $(SAN_FLAGS) -c -o $@ $<
$(SAN_OBJS): CPPFLAGS += -DPGLEASE_VERIFY   # pool_verify() after every loop iteration (pool/verify.h)

# libFuzzer targets for the parsers that see untrusted bytes (clang only); tests/fuzz/seeds/<target>/ seeds a corpus.
FUZZ_SECONDS ?= 15
FUZZ_CFLAGS := -std=c11 -g -O1 -D_GNU_SOURCE $(INC_daemon) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
build/fuzz/fuzz_startup: tests/fuzz/fuzz_startup.c daemon/startup.c pool/params.c base/proto.c base/grow.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^
build/fuzz/fuzz_frame: tests/fuzz/fuzz_frame.c base/frame.c pool/stream.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^

build/fuzz/fuzz_pin: tests/fuzz/fuzz_pin.c pool/pin.c pool/sqllex.c pool/params.c base/grow.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^

build/fuzz/fuzz_reset: tests/fuzz/fuzz_reset.c pool/reset_sql.c pool/sqllex.c pool/params.c base/grow.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^

build/fuzz/fuzz_scram: tests/fuzz/fuzz_scram.c daemon/scram.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcrypto

build/fuzz/fuzz_userlist: tests/fuzz/fuzz_userlist.c daemon/userlist.c daemon/authfile.c daemon/scram.c daemon/md5auth.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -lcrypto

build/fuzz/fuzz_hba: tests/fuzz/fuzz_hba.c daemon/hba.c daemon/authfile.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^

fuzz: build/fuzz/fuzz_startup build/fuzz/fuzz_frame build/fuzz/fuzz_pin build/fuzz/fuzz_reset \
      build/fuzz/fuzz_scram build/fuzz/fuzz_userlist build/fuzz/fuzz_hba
	@set -e; for f in $^; do echo "== $$f ($(FUZZ_SECONDS) s)"; mkdir -p $$f.corpus; \
	  seeds=tests/fuzz/seeds/$$(basename $$f); [ -d $$seeds ] || seeds=; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=12000 $$f.corpus $$seeds 2>&1 | tail -n 2; done

build/libpglease.a: $(LIB_OBJS)
	ar rcs $@ $^

build/tests/%: tests/%.c build/libpglease.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(call test_inc,$<) $(CFLAGS) -o $@ $< build/libpglease.a $(LDLIBS) -lcriterion

# tests/integration/test_auth_query.py drives pool/authq.c against PostgreSQL through this (both builds).
build/authq_driver: tests/integration/authq_driver.c build/libpglease.a
	$(CC) $(CPPFLAGS) $(INC_daemon) $(CFLAGS) -o $@ $< build/libpglease.a $(LDLIBS)

build/authq_driver-asan: tests/integration/authq_driver.c $(filter-out build/asan/daemon/main.o,$(SAN_OBJS))
	$(CC) $(CPPFLAGS) $(INC_daemon) $(CFLAGS) $(SAN_FLAGS) -o $@ $^ $(LDLIBS)

deps:
	@tests/lib/deps.sh build

run:
	@tests/lib/deps.sh run
	@$(MAKE) --no-print-directory pglease
	@tests/lib/run-local.sh

test:
	@tests/lib/deps.sh test
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz
	@# The two builds' suites run side by side: each starts its own PostgreSQL and pglease on random
	@# ports, and most of their time is spent waiting (timeouts, restarts), not on the CPU.
	@$(MAKE) --no-print-directory -j2 --output-sync=target integration integration-asan
	@$(MAKE) --no-print-directory torture
	@$(MAKE) --no-print-directory torture-asan
	@$(MAKE) --no-print-directory systemd-check
	@$(MAKE) --no-print-directory clients
	@$(MAKE) --no-print-directory clients-asan

unit: $(UNIT_BINS)
	@tests/layers.sh
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: pglease build/authq_driver
	PGLEASE_BIN=$(CURDIR)/pglease $(PY) -m pytest -q tests/integration

integration-asan: build/pglease-asan build/authq_driver-asan
	PGLEASE_BIN=$(CURDIR)/build/pglease-asan $(PY) -m pytest -q tests/integration

# The torture test (tests/torture/README.md): SECONDS of seeded random clients through pglease, every
# reply compared with PostgreSQL. A failure prints its seed; `make torture SEED=... SECONDS=...` replays it.
SECONDS ?= 60
SEED ?=
TORTURE_ARGS ?=
TORTURE = $(PY) tests/torture/torture.py --seconds $(SECONDS) $(if $(SEED),--seed $(SEED)) $(TORTURE_ARGS)

torture: pglease
	$(TORTURE) --bin $(or $(PGLEASE_BIN),$(CURDIR)/pglease)

torture-asan: build/pglease-asan
	$(TORTURE) --bin $(CURDIR)/build/pglease-asan

# The client matrix (tests/clients): psql, pgbench, psycopg, node-postgres, pgjdbc.
clients: pglease
	cd tests/clients/node && npm ci --no-audit --no-fund --loglevel=error
	PGLEASE_BIN=$(CURDIR)/pglease $(PY) -m pytest -q tests/clients

clients-asan: build/pglease-asan
	cd tests/clients/node && npm ci --no-audit --no-fund --loglevel=error
	PGLEASE_BIN=$(CURDIR)/build/pglease-asan $(PY) -m pytest -q tests/clients

bench:
	@tests/lib/deps.sh bench
	@$(MAKE) --no-print-directory pglease
	@tests/bench/bench.sh

# A/B: this tree's ./pglease (A) against commit REV's (B, built by tests/bench/build-rev.sh).
bench-ab:
	@test -n "$(REV)" || { echo "usage: make bench-ab REV=<commit>" >&2; exit 2; }
	@tests/lib/deps.sh bench
	@$(MAKE) --no-print-directory pglease
	@b=$$(tests/bench/build-rev.sh '$(REV)') && PGLEASE_B_BIN=$$b tests/bench/bench.sh

clean:
	rm -rf build pglease

include systemd/install.mk

-include $(OBJS:.o=.d) $(SAN_OBJS:.o=.d) $(UNIT_BINS:=.d) build/authq_driver.d build/authq_driver-asan.d
