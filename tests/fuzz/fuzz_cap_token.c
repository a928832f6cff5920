/* libFuzzer target for capability tokens and references: any bytes (from a
 * guest, or later from another node) give UQ_OK or an error with a message,
 * never a crash. A token that passes must carry exactly the signed fields. */
#include <sodium.h>

#include "kernel/caps.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t pk[32], sk[64];
    static int ready;
    if (!ready) {
        if (sodium_init() < 0) __builtin_trap();
        crypto_sign_keypair(pk, sk);
        ready = 1;
    }
    uqi_cap *c;
    uq_errmsg em = {{0}};
    if (uqi_cap_token_check((const char *)data, size, pk, &c, &em) == UQ_OK) free(c);
    else if (em.text[0] == '\0') __builtin_trap();
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (v) {
        uqi_capref *refs;
        uint32_t n;
        em.text[0] = '\0';
        if (uqi_caprefs_from_json(v, "fuzz.node", &refs, &n, &em) == UQ_OK) uqi_caprefs_free(refs, n);
        else if (em.text[0] == '\0') __builtin_trap();
        json_decref(v);
    }
    return 0;
}
