# uqbar: one Makefile. Targets: all (build/uqbar), test, bench, run, fuzz, clean.
# Switches: SANITIZE=address,undefined   DEBUG=1   WERROR=1
# Every target first installs missing Debian packages (scripts/deps.sh).

CC      ?= cc
BUILD   ?= build
SANITIZE ?=
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wundef \
           -Wwrite-strings -Wno-unused-parameter
CFLAGS_BASE := -std=gnu11 -g -O2 -fno-strict-aliasing -pthread -Iinclude -Isrc -Isdk $(WARN)
ifeq ($(WERROR),1)
CFLAGS_BASE += -Werror
endif
ifeq ($(DEBUG),1)
CFLAGS_BASE += -O0
else
CFLAGS_BASE += -DNDEBUG
endif
ifneq ($(SANITIZE),)
CFLAGS_BASE += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -UNDEBUG
LDSAN := -fsanitize=$(SANITIZE)
ifeq ($(origin BUILD),file)
BUILD := build-san
endif
endif
CFLAGS  := $(CFLAGS_BASE) $(EXTRA_CFLAGS)
# Guest code (dlopen'ed) resolves host imports and wasm_rt_* against us.
LDFLAGS := -pthread -Wl,--dynamic-list=src/engine/exports.list $(LDSAN)
LDLIBS  := -lsodium -lcrypto -ljansson -llmdb -ldl -lrt

LIB_SRC := $(wildcard src/util/*.c src/engine/*.c src/sched/*.c src/kernel/*.c src/store/*.c src/net/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(BUILD)/src/cli/main.o $(BUILD)/src/cli/boot.o $(BUILD)/src/cli/boot_net.o $(BUILD)/src/cli/restore.o

.PHONY: all deps test bench run fuzz clean guests
all: deps $(BUILD)/uqbar

deps:
	@sh scripts/deps.sh

$(BUILD)/src/%.o: src/%.c $(wildcard src/*/*.h include/uqbar/*.h sdk/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libuqbar.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/uqbar: $(CLI_OBJ) $(BUILD)/libuqbar.a src/engine/exports.list
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) -Wl,--whole-archive $(BUILD)/libuqbar.a -Wl,--no-whole-archive $(LDLIBS)

include tests/tests.mk
include bench/bench.mk

run: all $(APPS)
	@echo 'uqbar: booting a node in ./home with the demo package (apps/demo.json: echo, middleware "mw",'
	@echo '       counter, fanout, sink, tally), approved with --yes after it shows what each app asks for;'
	@echo '       the next make run brings the same processes back, with their state.'
	@echo 'uqbar: try first:   m echo {"hello":"world"}    then: m mw {"via":"middleware"}   m tally {"add":1}   ps   help'
	$(BUILD)/uqbar boot --home home --name dev.local --install $(SHARED)/apps/demo.json --yes

clean:
	rm -rf build build-san build-uc build-tsan
