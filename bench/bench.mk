# Benchmarks: `make bench` prints one line per figure on stdout,
# `name value unit`, and nothing else; building and progress go to stderr
# (which is why the build runs in a sub-make with its output redirected).
# Figures come from bench/run.sh (compute kernels: native, uqbar, V8) and
# $(BUILD)/bench/bench_engine (engine micro-benchmarks).

BENCH_OUT        := $(BUILD)/bench
BENCH_KERNELS    := $(patsubst bench/kernels/%.c,%,$(wildcard bench/kernels/*.c))
BENCH_GUEST_WASM := $(patsubst bench/guests/%.wat,$(BENCH_OUT)/guests/%.wasm,$(wildcard bench/guests/*.wat)) \
                    $(patsubst bench/guests/%.c,$(BENCH_OUT)/guests/%.wasm,$(wildcard bench/guests/*.c))
BENCH_WASI_CC    ?= clang
BENCH_WASI_ROOT  ?= /usr

.PHONY: bench bench-build

bench:
	@$(MAKE) --no-print-directory bench-build >&2
	@BUILD='$(BUILD)' KERNELS='$(BENCH_KERNELS)' sh bench/run.sh

BENCH_APPS := $(patsubst bench/apps/%.c,$(BENCH_OUT)/apps/%.wasm,$(wildcard bench/apps/*.c))

$(BENCH_OUT)/apps/%.wasm: bench/apps/%.c sdk/uqbar.h sdk/sdk_abi.h
	@mkdir -p $(dir $@)
	$(BENCH_WASI_CC) --target=wasm32-wasi --sysroot=$(BENCH_WASI_ROOT) -O2 -Wall -Isdk -o $@.tmp $<
	wasm-strip $@.tmp
	mv -f $@.tmp $@

$(BENCH_OUT)/bench_kernel: bench/bench_kernel.c $(BUILD)/libuqbar.a src/engine/exports.list $(wildcard src/*/*.h include/uqbar/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ bench/bench_kernel.c -Wl,--whole-archive $(BUILD)/libuqbar.a -Wl,--no-whole-archive $(LDLIBS)

bench-build: all guests $(BENCH_OUT)/bench_engine $(BENCH_OUT)/bench_kernel $(BENCH_OUT)/bench_store $(BENCH_APPS) $(BENCH_GUEST_WASM) \
             $(BENCH_KERNELS:%=$(BENCH_OUT)/%.native) $(BENCH_KERNELS:%=$(BENCH_OUT)/%.wasm)

# One kernel at a time, both flavours (NAME.native and NAME.wasm).
$(BENCH_OUT)/%.native $(BENCH_OUT)/%.wasm: bench/kernels/%.c bench/kernels/build.sh
	KERNELS=$* sh bench/kernels/build.sh $(BENCH_OUT)

$(BENCH_OUT)/guests/%.wasm: bench/guests/%.wat
	@mkdir -p $(dir $@)
	wat2wasm $< -o $@

$(BENCH_OUT)/guests/%.wasm: bench/guests/%.c
	@mkdir -p $(dir $@)
	$(BENCH_WASI_CC) --target=wasm32-wasi --sysroot=$(BENCH_WASI_ROOT) -O2 -Wall -o $@.tmp $<
	wasm-strip $@.tmp
	mv -f $@.tmp $@

# Linked as $(BUILD)/uqbar is: guest code resolves Z_* and wasm_rt_* against it.
$(BENCH_OUT)/bench_engine: bench/bench_engine.c bench/bench_out.h $(BUILD)/libuqbar.a src/engine/exports.list $(wildcard src/*/*.h include/uqbar/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ bench/bench_engine.c -Wl,--whole-archive $(BUILD)/libuqbar.a -Wl,--no-whole-archive $(LDLIBS)

# The node store (src/store/): durable state writes, group commit, files.
$(BENCH_OUT)/bench_store: bench/bench_store.c bench/bench_out.h $(BUILD)/libuqbar.a $(wildcard src/*/*.h include/uqbar/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ bench/bench_store.c -Wl,--whole-archive $(BUILD)/libuqbar.a -Wl,--no-whole-archive $(LDLIBS)

# Networking (issue 6): remote round trip, small messages, bulk, link setup.
$(BENCH_OUT)/bench_net: bench/bench_net.c $(BUILD)/libuqbar.a $(wildcard src/*/*.h include/uqbar/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ bench/bench_net.c -Wl,--whole-archive $(BUILD)/libuqbar.a -Wl,--no-whole-archive $(LDLIBS)
bench-build: $(BENCH_OUT)/bench_net

# The file module fs as an app uses it: Create and Open, their round trip,
# CPU and commits (bench/run.sh runs it; by hand: build/bench/bench_fs build/guests DIR).
$(BENCH_OUT)/bench_fs: bench/bench_fs.c bench/bench_out.h $(BUILD)/libuqbar.a src/engine/exports.list $(wildcard src/*/*.h include/uqbar/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ bench/bench_fs.c -Wl,--whole-archive $(BUILD)/libuqbar.a -Wl,--no-whole-archive $(LDLIBS)
bench-build: $(BENCH_OUT)/bench_fs
