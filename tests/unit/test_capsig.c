/* Capability records and tokens (src/kernel/caps.c): canonical parameters,
 * the signed bytes, and tokens whose every field is covered by the signature. */
#include <sodium.h>
#include <stdio.h>

#include "kernel/caps.h"
#include "runner.h"

static uqi_addr addr(const char *text)
{
    uqi_addr a;
    ASSERT_EQ(uqi_addr_parse(text, NULL, &a, NULL), UQ_OK);
    return a;
}

/* "compared on the issuer plus the *parsed* JSON": key order and spacing do
 * not make two capabilities differ. */
TEST(capsig_params_are_canonical)
{
    json_t *a = json_loads("{ \"b\": [1, 2], \"a\": \"x\" }", 0, NULL), *b = json_loads("{\"a\":\"x\",\"b\":[1,2]}", 0, NULL);
    char *ca = uqi_cap_canon(a), *cb = uqi_cap_canon(b);
    ASSERT(strcmp(ca, cb) == 0);
    ASSERT(strcmp(ca, "{\"a\":\"x\",\"b\":[1,2]}") == 0);
    free(ca);
    free(cb);
    json_decref(a);
    json_decref(b);
    uqi_capref r;
    json_t *bad = json_loads("{\"params\":1}", 0, NULL);
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_capref_from_json(bad, "n.node", &r, &em), UQ_EINVAL); /* no issuer */
    ASSERT_STR_HAS(em.text, "a capability is");
    json_decref(bad);
}

/* "signed by the issuing node's Ed25519 key, so that another node can
 * verify a capability our node issued" */
TEST(capsig_tokens_verify_and_every_field_is_signed)
{
    ASSERT(sodium_init() >= 0);
    uint8_t pk[32], sk[64], pk2[32], sk2[64];
    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(pk2, sk2);
    uqi_addr is = addr("n.node@vault"), ho = addr("n.node@bob");
    uqi_cap *c = uqi_cap_new(&is, "{\"role\":\"reader\"}", &ho, sk);
    json_t *t = uqi_cap_token(c);
    char *text = json_dumps(t, JSON_COMPACT);
    uqi_cap *got;
    uq_errmsg em = {{0}};
    ASSERT_EQ(uqi_cap_token_check(text, strlen(text), pk, &got, &em), UQ_OK);
    ASSERT_EQ(got->serial, c->serial);
    ASSERT(strcmp(got->params, c->params) == 0);
    free(got);
    /* another node's key does not verify it */
    ASSERT_EQ(uqi_cap_token_check(text, strlen(text), pk2, &got, &em), UQ_ECRYPTO);
    ASSERT_STR_HAS(em.text, "forged or altered");
    /* change each field in turn */
    const char *fields[][2] = {{"issuer", "n.node@vaulx"}, {"holder", "n.node@mallory"},
                               {"params", "{\"role\":\"admin\"}"}, {"serial", "0123456789abcdef"}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        json_t *x = json_deep_copy(t);
        json_object_set_new(x, fields[i][0], json_string(fields[i][1]));
        char *s = json_dumps(x, JSON_COMPACT);
        ASSERT_EQ(uqi_cap_token_check(s, strlen(s), pk, &got, &em), UQ_ECRYPTO);
        free(s);
        json_decref(x);
    }
    /* not a token at all */
    ASSERT_EQ(uqi_cap_token_check("{\"issuer\":1}", 12, pk, &got, &em), UQ_EINVAL);
    ASSERT_EQ(uqi_cap_token_check("[]", 2, pk, &got, &em), UQ_EINVAL);
    free(text);
    json_decref(t);
    free(c);
}
