/* Sealed backup entries (backup_crypt.h). Plaintext layout:
 *   version (1) | db ('p' or 's') | flags (bit 0: deleted) | key length (u16 LE) | key | value
 * Associated data: "uqbar-backup-1" NUL owner NUL entry-id-hex seq (u64 LE). */
#include "kernel/backup_crypt.h"

#include <sodium.h>
#include <string.h>

#include "util/util.h"

#define AD_MAX (15 + 64 + UQI_BID_HEX + 8)

void uqi_bkeys_derive(const uint8_t sk[64], uqi_bkeys *k)
{
    crypto_kdf_derive_from_key(k->enc, sizeof k->enc, 1, "uqbackup", sk);
    crypto_kdf_derive_from_key(k->id, sizeof k->id, 2, "uqbackup", sk);
}

void uqi_bkeys_wipe(uqi_bkeys *k) { sodium_memzero(k, sizeof *k); }

void uqi_bentry_id(const uqi_bkeys *k, char db, const void *key, size_t klen, char hex[UQI_BID_HEX + 1])
{
    crypto_generichash_state st;
    uint8_t h[UQI_BID_HEX / 2];
    crypto_generichash_init(&st, k->id, sizeof k->id, sizeof h);
    crypto_generichash_update(&st, (const uint8_t *)&db, 1);
    crypto_generichash_update(&st, key, klen);
    crypto_generichash_final(&st, h, sizeof h);
    sodium_bin2hex(hex, UQI_BID_HEX + 1, h, sizeof h);
}

static size_t make_ad(uint8_t *ad, const char *owner, const char *eid, uint64_t seq)
{
    size_t n = 0, ol = strnlen(owner, 64);
    memcpy(ad, "uqbar-backup-1", 15); /* with its NUL */
    n = 15;
    memcpy(ad + n, owner, ol);
    n += ol;
    ad[n++] = 0;
    memcpy(ad + n, eid, UQI_BID_HEX);
    n += UQI_BID_HEX;
    uqi_put_le64(ad + n, seq);
    n += 8;
    return n;
}

uint8_t *uqi_bentry_seal(const uqi_bkeys *k, const char *owner, const char *eid, uint64_t seq, char db,
                         const void *key, size_t klen, const void *val, size_t vlen, bool deleted, size_t *len)
{
    UQ_VERIFY(klen <= 65535);
    size_t plen = 5 + klen + vlen;
    uint8_t *pt = uqi_xmalloc(plen);
    pt[0] = UQI_BENTRY_VERSION;
    pt[1] = (uint8_t)db;
    pt[2] = deleted ? 1 : 0;
    pt[3] = (uint8_t)(klen & 0xff);
    pt[4] = (uint8_t)(klen >> 8);
    memcpy(pt + 5, key, klen);
    if (vlen) memcpy(pt + 5 + klen, val, vlen);
    uint8_t ad[AD_MAX];
    size_t adl = make_ad(ad, owner, eid, seq);
    size_t out_len = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + plen + crypto_aead_xchacha20poly1305_ietf_ABYTES;
    uint8_t *out = uqi_xmalloc(out_len);
    randombytes_buf(out, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    unsigned long long cl;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &cl, pt, plen, ad,
                                               adl, NULL, out, k->enc);
    sodium_memzero(pt, plen);
    free(pt);
    *len = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + (size_t)cl;
    return out;
}

uq_err uqi_bentry_open(const uqi_bkeys *k, const char *owner, const char *eid, uint64_t seq, const uint8_t *buf,
                       size_t len, uqi_bentry *out, uq_errmsg *em)
{
    memset(out, 0, sizeof *out);
    const size_t nb = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, ab = crypto_aead_xchacha20poly1305_ietf_ABYTES;
    if (strlen(eid) != UQI_BID_HEX)
        return uqi_errf(em, UQ_ECRYPTO, "entry id \"%.40s\" is not %d hex digits", eid, UQI_BID_HEX);
    if (len < nb + ab + 5)
        return uqi_errf(em, UQ_ECRYPTO, "entry %s (seq %llu) is %zu bytes, too short to be a sealed entry", eid,
                        (unsigned long long)seq, len);
    size_t plen = len - nb - ab;
    uint8_t *pt = uqi_xmalloc(plen);
    uint8_t ad[AD_MAX];
    size_t adl = make_ad(ad, owner, eid, seq);
    unsigned long long pl;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &pl, NULL, buf + nb, len - nb, ad, adl, buf, k->enc) != 0) {
        free(pt);
        return uqi_errf(em, UQ_ECRYPTO,
                        "entry %s (seq %llu) fails authentication: it was altered, or is not this node's entry "
                        "under this id and sequence",
                        eid, (unsigned long long)seq);
    }
    size_t klen = (size_t)pt[3] | (size_t)pt[4] << 8;
    uq_err e = UQ_OK;
    char idc[UQI_BID_HEX + 1];
    if (pt[0] != UQI_BENTRY_VERSION || (pt[1] != UQI_BDB_PROCS && pt[1] != UQI_BDB_STATE) || pt[2] > 1 ||
        5 + klen > plen || klen == 0) {
        e = uqi_errf(em, UQ_ECORRUPT, "entry %s (seq %llu): version %u or its layout is not one this uqbar reads", eid,
                     (unsigned long long)seq, pt[0]);
    } else {
        uqi_bentry_id(k, (char)pt[1], pt + 5, klen, idc);
        if (strcmp(idc, eid) != 0)
            e = uqi_errf(em, UQ_ECRYPTO, "entry %s (seq %llu) holds the key of entry %s", eid,
                         (unsigned long long)seq, idc);
    }
    if (!e) {
        out->db = (char)pt[1];
        out->deleted = pt[2] & 1;
        out->klen = klen;
        out->key = uqi_xmalloc(klen + 1);
        memcpy(out->key, pt + 5, klen);
        out->key[klen] = 0;
        out->vlen = plen - 5 - klen;
        out->val = uqi_xmalloc(out->vlen + 1);
        if (out->vlen) memcpy(out->val, pt + 5 + klen, out->vlen);
        out->val[out->vlen] = 0;
    }
    sodium_memzero(pt, plen);
    free(pt);
    return e;
}

void uqi_bentry_free(uqi_bentry *e)
{
    if (!e) return;
    if (e->val) sodium_memzero(e->val, e->vlen);
    free(e->key);
    free(e->val);
    memset(e, 0, sizeof *e);
}
