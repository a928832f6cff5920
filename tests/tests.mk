# Tests: guests (wasm from C and WAT), the runner, unit and integration tests.
GUEST_C   := $(wildcard tests/guests/*.c)
GUEST_WAT := $(wildcard tests/guests/*.wat)
GUESTS    := $(GUEST_C:tests/guests/%.c=$(BUILD)/guests/%.wasm) $(GUEST_WAT:tests/guests/%.wat=$(BUILD)/guests/%.wasm)
WASM_CC   := clang --target=wasm32-wasi --sysroot=/usr
TEST_SRC  := tests/runner.c $(wildcard tests/unit/*.c tests/integ/*.c)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/%.o)

$(BUILD)/guests/%.wasm: tests/guests/%.c
	@mkdir -p $(dir $@)
	$(WASM_CC) -O2 -o $@ $<
	wasm-strip $@

$(BUILD)/guests/%.wasm: tests/guests/%.wat
	@mkdir -p $(dir $@)
	wat2wasm $< -o $@

$(BUILD)/guests/sqlq.wasm: tests/programs/sqlite/sqlq.c tests/programs/sqlite/build.sh
	@mkdir -p $(BUILD)/sqlite
	bash tests/programs/sqlite/build.sh $(BUILD)/sqlite
	cp $(BUILD)/sqlite/sqlq.wasm $@

guests: $(GUESTS) $(BUILD)/guests/sqlq.wasm

$(BUILD)/tests/%.o: tests/%.c tests/runner.h $(wildcard tests/integ/*.h src/*/*.h include/uqbar/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -c $< -o $@

$(BUILD)/uqbar_tests: $(TEST_OBJ) $(BUILD)/libuqbar.a
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) -Wl,--whole-archive $(BUILD)/libuqbar.a -Wl,--no-whole-archive $(LDLIBS)

test: all guests $(BUILD)/uqbar_tests
	UQ_BUILD=$(BUILD) $(BUILD)/uqbar_tests $(T)
