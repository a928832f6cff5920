/* Capabilities: canonical parameters, per-holder sets, Ed25519 signatures
 * and tokens. See caps.h and docs/CAPABILITIES.md. */
#include "kernel/caps.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

/* ---- parameters and references ------------------------------------------- */
char *uqi_cap_canon(json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (s && strlen(s) > UQI_CAP_PARAMS_MAX) {
        free(s);
        return NULL;
    }
    return s;
}

uq_err uqi_capref_from_json(json_t *v, const char *local_node, uqi_capref *out, uq_errmsg *em)
{
    out->params = NULL;
    json_t *iss = json_is_object(v) ? json_object_get(v, "issuer") : NULL;
    json_t *par = json_is_object(v) ? json_object_get(v, "params") : NULL;
    if (!json_is_string(iss) || !par)
        return uqi_errf(em, UQ_EINVAL, "a capability is {\"issuer\":\"node@process\",\"params\":JSON}");
    if (uqi_addr_parse(json_string_value(iss), local_node, &out->issuer, em)) return UQ_EINVAL;
    out->params = uqi_cap_canon(par);
    if (!out->params)
        return uqi_errf(em, UQ_ELIMIT, "capability parameters are over %d bytes of JSON", UQI_CAP_PARAMS_MAX);
    return UQ_OK;
}

uq_err uqi_caprefs_from_json(json_t *arr, const char *local_node, uqi_capref **out, uint32_t *n, uq_errmsg *em)
{
    *out = NULL;
    *n = 0;
    if (!arr || json_is_null(arr)) return UQ_OK;
    if (!json_is_array(arr) || json_array_size(arr) > 256)
        return uqi_errf(em, UQ_EINVAL, "capabilities must be a JSON array (at most 256)");
    size_t k = json_array_size(arr);
    uqi_capref *r = uqi_xcalloc(k ? k : 1, sizeof *r);
    for (size_t i = 0; i < k; i++) {
        uq_err e = uqi_capref_from_json(json_array_get(arr, i), local_node, &r[i], em);
        if (e) {
            uqi_caprefs_free(r, (uint32_t)i + 1);
            return e;
        }
    }
    *out = r;
    *n = (uint32_t)k;
    return UQ_OK;
}

void uqi_caprefs_free(uqi_capref *r, uint32_t n)
{
    if (!r) return;
    for (uint32_t i = 0; i < n; i++) free(r[i].params);
    free(r);
}

void uqi_capref_describe(const uqi_addr *issuer, const char *params, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s@%s %.200s", issuer->node, issuer->process, params);
}

/* ---- sets --------------------------------------------------------------------- */
uint32_t uqi_cap_hash(const uqi_addr *issuer, const char *params)
{
    uint32_t h = 2166136261u;
    for (const char *s = issuer->node; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    h = (h ^ '@') * 16777619u;
    for (const char *s = issuer->process; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    h = (h ^ ' ') * 16777619u;
    for (const char *s = params; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

uqi_cap *uqi_capset_find(const uqi_capset *s, const uqi_addr *issuer, const char *params, uint32_t hash)
{
    if (!s->nb) return NULL;
    for (uqi_cap *c = s->b[hash & (s->nb - 1)]; c; c = c->hnext)
        if (c->hash == hash && strcmp(c->params, params) == 0 && uqi_addr_eq(&c->issuer, issuer)) return c;
    return NULL;
}

void uqi_capset_add(uqi_capset *s, uqi_cap *c)
{
    if (s->n + 1 > s->nb) {
        uint32_t nb = s->nb ? s->nb * 2 : 4;
        uqi_cap **b = uqi_xcalloc(nb, sizeof *b);
        for (uint32_t i = 0; i < s->nb; i++) {
            for (uqi_cap *x = s->b[i], *nx; x; x = nx) {
                nx = x->hnext;
                x->hnext = b[x->hash & (nb - 1)];
                b[x->hash & (nb - 1)] = x;
            }
        }
        free(s->b);
        s->b = b;
        s->nb = nb;
    }
    c->hnext = s->b[c->hash & (s->nb - 1)];
    s->b[c->hash & (s->nb - 1)] = c;
    s->n++;
}

void uqi_capset_remove(uqi_capset *s, uqi_cap *c)
{
    uqi_cap **pp = &s->b[c->hash & (s->nb - 1)];
    while (*pp && *pp != c) pp = &(*pp)->hnext;
    UQ_ASSERT(*pp == c);
    *pp = c->hnext;
    s->n--;
}

/* ---- signatures ------------------------------------------------------------- */
size_t uqi_cap_signed_bytes(const uqi_addr *issuer, const uqi_addr *holder, uint64_t serial, const char *params,
                            uint8_t *buf, size_t cap)
{
    char is[2 * UQI_NAME_MAX + 2], ho[2 * UQI_NAME_MAX + 2];
    uqi_addr_format(issuer, is, sizeof is);
    uqi_addr_format(holder, ho, sizeof ho);
    size_t il = strlen(is), hl = strlen(ho), pl = strlen(params);
    size_t need = sizeof UQI_CAP_SIG_DOMAIN - 1 + 8 + 1 + il + 1 + hl + 4 + pl;
    UQ_VERIFY(need <= cap);
    size_t k = 0;
    memcpy(buf, UQI_CAP_SIG_DOMAIN, sizeof UQI_CAP_SIG_DOMAIN - 1);
    k += sizeof UQI_CAP_SIG_DOMAIN - 1;
    for (int i = 0; i < 8; i++) buf[k++] = (uint8_t)(serial >> (8 * i));
    buf[k++] = (uint8_t)il;
    memcpy(buf + k, is, il);
    k += il;
    buf[k++] = (uint8_t)hl;
    memcpy(buf + k, ho, hl);
    k += hl;
    for (int i = 0; i < 4; i++) buf[k++] = (uint8_t)(pl >> (8 * i));
    memcpy(buf + k, params, pl);
    return k + pl;
}

#define SIGNED_MAX (16 + 8 + 2 * (2 * UQI_NAME_MAX + 2) + 4 + UQI_CAP_PARAMS_MAX)

/* Serials need only be unique per grant (the signature binds them): a
 * random start per node process, then a counter (no system call per grant). */
static uint64_t next_serial(void)
{
    static uint64_t serial;
    uint64_t s = __atomic_load_n(&serial, __ATOMIC_RELAXED);
    if (!s) {
        uint64_t r;
        randombytes_buf(&r, sizeof r);
        r |= 1;
        __atomic_compare_exchange_n(&serial, &s, r, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    }
    return __atomic_fetch_add(&serial, 1, __ATOMIC_RELAXED);
}

uqi_cap *uqi_cap_new(const uqi_addr *issuer, const char *params, const uqi_addr *holder, const uint8_t sk[64])
{
    return uqi_cap_new_h(issuer, params, uqi_cap_hash(issuer, params), holder, sk);
}

uqi_cap *uqi_cap_new_h(const uqi_addr *issuer, const char *params, uint32_t hash, const uqi_addr *holder,
                       const uint8_t sk[64])
{
    size_t pl = strlen(params);
    uqi_cap *c = uqi_xcalloc(1, sizeof *c + pl + 1);
    memcpy(c->params, params, pl + 1);
    c->issuer = *issuer;
    c->holder = *holder;
    c->hash = hash;
    c->serial = next_serial();
    c->signer = sk;
    return c;
}

const uint8_t *uqi_cap_sig(uqi_cap *c)
{
    if (c->signer) {
        uint8_t msg[SIGNED_MAX];
        size_t n = uqi_cap_signed_bytes(&c->issuer, &c->holder, c->serial, c->params, msg, sizeof msg);
        crypto_sign_detached(c->sig, NULL, msg, n, c->signer);
        c->signer = NULL;
    }
    return c->sig;
}

/* ---- tokens --------------------------------------------------------------- */
json_t *uqi_cap_token(uqi_cap *c)
{
    uqi_cap_sig(c);
    char is[2 * UQI_NAME_MAX + 2], ho[2 * UQI_NAME_MAX + 2], serial[17], sig[129];
    uqi_addr_format(&c->issuer, is, sizeof is);
    uqi_addr_format(&c->holder, ho, sizeof ho);
    snprintf(serial, sizeof serial, "%016llx", (unsigned long long)c->serial);
    sodium_bin2hex(sig, sizeof sig, c->sig, sizeof c->sig);
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "issuer", is, "holder", ho, "params", c->params, "serial", serial, "sig",
                     sig);
}

uq_err uqi_cap_token_check(const char *text, size_t len, const uint8_t pk[32], uqi_cap **out, uq_errmsg *em)
{
    *out = NULL;
    json_error_t je;
    json_t *t = json_loadb(text, len, 0, &je);
    const char *is = NULL, *ho = NULL, *params = NULL, *serial = NULL, *sig = NULL;
    if (!t || json_unpack(t, "{s:s,s:s,s:s,s:s,s:s}", "issuer", &is, "holder", &ho, "params", &params, "serial",
                          &serial, "sig", &sig) != 0) {
        json_decref(t);
        return uqi_errf(em, UQ_EINVAL, "not a capability token: want {\"issuer\",\"holder\",\"params\",\"serial\",\"sig\"}");
    }
    uq_err err = UQ_OK;
    uqi_addr ia, ha;
    uint8_t sbin[64], serbin[8];
    size_t got;
    if (uqi_addr_parse(is, NULL, &ia, em) || uqi_addr_parse(ho, NULL, &ha, em)) {
        err = UQ_EINVAL;
    } else if (strlen(params) > UQI_CAP_PARAMS_MAX) {
        err = uqi_errf(em, UQ_EINVAL, "token parameters are over %d bytes", UQI_CAP_PARAMS_MAX);
    } else if (strlen(sig) != 128 || sodium_hex2bin(sbin, sizeof sbin, sig, 128, NULL, &got, NULL) || got != 64 ||
               strlen(serial) != 16 || sodium_hex2bin(serbin, sizeof serbin, serial, 16, NULL, &got, NULL) || got != 8) {
        err = uqi_errf(em, UQ_EINVAL, "token serial must be 16 and sig 128 hex digits");
    } else {
        uint64_t ser = 0;
        for (int i = 0; i < 8; i++) ser = (ser << 8) | serbin[i];
        uint8_t msg[SIGNED_MAX];
        size_t n = uqi_cap_signed_bytes(&ia, &ha, ser, params, msg, sizeof msg);
        if (crypto_sign_verify_detached(sbin, msg, n, pk) != 0) {
            err = uqi_errf(em, UQ_ECRYPTO, "the token's signature does not match: forged or altered");
        } else {
            size_t pl = strlen(params);
            uqi_cap *c = uqi_xcalloc(1, sizeof *c + pl + 1);
            memcpy(c->params, params, pl + 1);
            c->issuer = ia;
            c->holder = ha;
            c->serial = ser;
            c->hash = uqi_cap_hash(&ia, params);
            memcpy(c->sig, sbin, 64);
            *out = c;
        }
    }
    json_decref(t);
    return err;
}
