/* libFuzzer target for the wasm reader and the import check: any bytes must
 * give UQ_OK or an error with a message, never a crash or an out-of-bounds
 * read. Run with `make fuzz` (FUZZ_SECONDS=60 by default). */
#include "engine/hostapi.h"
#include "engine/wasm_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uqi_wasm_info info;
    uq_errmsg em;
    if (uqi_wasm_parse(data, size, &info, &em) == UQ_OK) {
        uqi_hostapi_check(&info, &em);
        for (uint32_t i = 0; i < info.nexports; i++)
            if (info.exports[i].kind == 0) (void)uqi_wasm_func_sig(&info, info.exports[i].index);
        uqi_wasm_info_fini(&info);
    } else if (em.text[0] == '\0') {
        __builtin_trap(); /* every refusal explains itself */
    }
    return 0;
}
