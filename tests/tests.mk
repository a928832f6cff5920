# Tests: guests (wasm from C and WAT), the runner, unit and integration tests.
GUEST_C   := $(wildcard tests/guests/*.c)
GUEST_WAT := $(wildcard tests/guests/*.wat)
# Guests and the test compile cache do not depend on how the host is built:
# they live in build/ for every build flavour (a sanitizer build reuses them).
SHARED    := build
GUESTS    := $(GUEST_C:tests/guests/%.c=$(SHARED)/guests/%.wasm) $(GUEST_WAT:tests/guests/%.wat=$(SHARED)/guests/%.wasm)
WASM_CC   := clang --target=wasm32-wasi --sysroot=/usr
TEST_SRC  := tests/runner.c $(wildcard tests/unit/*.c tests/integ/*.c)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/%.o)

$(SHARED)/guests/%.wasm: tests/guests/%.c
	@mkdir -p $(dir $@)
	$(WASM_CC) -O2 -Isdk -o $@ $<
	wasm-strip $@

# A guest is one translation unit: the SDK and the shared guest headers.
$(GUEST_C:tests/guests/%.c=$(SHARED)/guests/%.wasm): $(wildcard sdk/*.h tests/guests/*.h)

$(SHARED)/guests/%.wasm: tests/guests/%.wat
	@mkdir -p $(dir $@)
	wat2wasm $< -o $@

$(SHARED)/guests/sqlq.wasm: tests/programs/sqlite/sqlq.c tests/programs/sqlite/build.sh
	@mkdir -p $(SHARED)/sqlite $(dir $@)
	SQLQ_WASM_ONLY=1 bash tests/programs/sqlite/build.sh $(SHARED)/sqlite
	cp $(SHARED)/sqlite/sqlq.wasm $@

guests: $(GUESTS) $(SHARED)/guests/sqlq.wasm

$(BUILD)/tests/%.o: tests/%.c tests/runner.h $(wildcard tests/integ/*.h src/*/*.h include/uqbar/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -c $< -o $@

$(BUILD)/uqbar_tests: $(TEST_OBJ) $(BUILD)/libuqbar.a
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) -Wl,--whole-archive $(BUILD)/libuqbar.a -Wl,--no-whole-archive $(LDLIBS)

# tunem: a userspace netem over TUN for the network-namespace tests, used
# when the kernel has no sch_netem (tests/tools/tunem.c, tests/integ/tnetns.h).
$(BUILD)/tunem: tests/tools/tunem.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(EXTRA_CFLAGS) $(LDSAN) -o $@ $<

test: all guests $(BUILD)/uqbar_tests $(BUILD)/tunem
	UQ_BUILD=$(BUILD) UQ_SHARED=$(SHARED) $(BUILD)/uqbar_tests $(T)

# Fuzzing: libFuzzer + ASan on the module reader; seeds are the test guests.
FUZZ_SECONDS ?= 60
$(SHARED)/fuzz/fuzz_wasm_parse: tests/fuzz/fuzz_wasm_parse.c src/engine/wasm_parse.c src/engine/hostapi.c src/util/err.c src/util/util.c
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc -o $@ $^

$(SHARED)/fuzz/fuzz_cap_token: tests/fuzz/fuzz_cap_token.c src/kernel/caps.c src/kernel/msg.c src/sched/sched.c src/sched/fiber.c src/util/err.c src/util/util.c
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc -o $@ $^ -lsodium -ljansson

# Every fuzz target built and run briefly (CI: `make fuzz-smoke`, 10 s each).
.PHONY: fuzz-smoke
fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=10

fuzz: $(SHARED)/fuzz/fuzz_wasm_parse $(SHARED)/fuzz/fuzz_cap_token $(GUESTS)
	@mkdir -p $(SHARED)/fuzz/corpus $(SHARED)/fuzz/corpus-caps
	cp $(GUESTS) $(SHARED)/fuzz/corpus/
	printf '%s' '{"issuer":"a.b@c","holder":"a.b@d","params":"\"messaging\"","serial":"0000000000000001","sig":"00"}' \
	    > $(SHARED)/fuzz/corpus-caps/token
	printf '%s' '[{"issuer":"c","params":{"k":[1,2]}}]' > $(SHARED)/fuzz/corpus-caps/refs
	$(SHARED)/fuzz/fuzz_wasm_parse -max_total_time=$(FUZZ_SECONDS) -max_len=65536 $(SHARED)/fuzz/corpus
	$(SHARED)/fuzz/fuzz_cap_token -max_total_time=$(FUZZ_SECONDS) -max_len=8192 $(SHARED)/fuzz/corpus-caps

# Apps shipped with the node, written against sdk/uqbar.h.
APP_SRC  := $(wildcard apps/*.c)
APPS     := $(APP_SRC:apps/%.c=$(SHARED)/apps/%.wasm)
$(SHARED)/apps/%.wasm: apps/%.c sdk/uqbar.h sdk/sdk_abi.h
	@mkdir -p $(dir $@)
	$(WASM_CC) -O2 -Isdk -o $@ $<
	wasm-strip $@
# The demo package (make run): its manifest sits beside the apps it names.
$(SHARED)/apps/%.json: apps/%.json
	@mkdir -p $(dir $@)
	cp $< $@
APPS += $(SHARED)/apps/demo.json
guests: $(APPS)

# The Rust guest example (Debian's rustc + libstd-rust-dev-wasm32; the rustc
# of rustup, if any, may lack the wasm32-wasi standard library).
RUSTC_WASM ?= /usr/bin/rustc
$(SHARED)/apps/rust_echo.wasm: apps/rust/echo.rs
	@mkdir -p $(dir $@)
	$(RUSTC_WASM) --target wasm32-wasi -O -o $@ $<
	wasm-strip $@
guests: $(SHARED)/apps/rust_echo.wasm

# Fuzzing the network decoders (frames, records, hellos, look-ups): run by `make fuzz`.
NET_FUZZ_SRC := src/net/frame.c src/net/noise.c src/net/record.c src/net/identity.c src/net/link.c \
                src/net/ticket.c src/net/dir.c src/net/lookup_wire.c src/kernel/msg.c src/sched/sched.c src/sched/fiber.c \
                src/util/err.c src/util/util.c
$(SHARED)/fuzz/fuzz_net_frame: tests/fuzz/fuzz_net_frame.c $(NET_FUZZ_SRC) $(wildcard src/net/*.h)
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc -o $@ tests/fuzz/fuzz_net_frame.c $(NET_FUZZ_SRC) -lsodium -lcrypto

# The kernel's decoder of messages from other nodes (src/kernel/remote.c).
WIRE_FUZZ_SRC := src/kernel/remote.c src/kernel/msg.c src/sched/sched.c src/sched/fiber.c src/net/frame.c src/net/noise.c \
                 src/util/err.c src/util/util.c
$(SHARED)/fuzz/fuzz_wire_decode: tests/fuzz/fuzz_wire_decode.c $(WIRE_FUZZ_SRC) src/kernel/remote.h src/kernel/msg.h src/net/frame.h
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc -o $@ tests/fuzz/fuzz_wire_decode.c $(WIRE_FUZZ_SRC) -lsodium -lcrypto

.PHONY: fuzz-net
fuzz-net: $(SHARED)/fuzz/fuzz_net_frame $(SHARED)/fuzz/fuzz_wire_decode
	@mkdir -p $(SHARED)/fuzz/corpus-net $(SHARED)/fuzz/corpus-wire
	printf '\001\001\005\000\000\000\000\000\000\000\000\052\000\000\000\005\001a\001b\001r\000\000\000\002{}\020application/json\000\000\000\003xyz' \
	    > $(SHARED)/fuzz/corpus-wire/request
	printf '\370\000\020\001\006c.node' > $(SHARED)/fuzz/corpus-net/lookup-request
	printf '\370\000\021\001\006c.node\000' > $(SHARED)/fuzz/corpus-net/lookup-unknown
	printf '\364\000\000\100' > $(SHARED)/fuzz/corpus-net/resume-attempt
	printf '\366\000\000\060' > $(SHARED)/fuzz/corpus-net/resume-answer
	$(SHARED)/fuzz/fuzz_net_frame -max_total_time=$(FUZZ_SECONDS) -max_len=140000 $(SHARED)/fuzz/corpus-net
	$(SHARED)/fuzz/fuzz_wire_decode -max_total_time=$(FUZZ_SECONDS) -max_len=4096 $(SHARED)/fuzz/corpus-wire
fuzz: fuzz-net
