/* Noise XX (25519, ChaChaPoly, BLAKE2b or SHA-256) on libsodium: hashing
 * and HKDF, the CipherState, the SymmetricState and the XX HandshakeState.
 * Checked byte for byte against the Cacophony vectors (tests/vectors). */
#include "net/noise.h"
#include "util/util.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

/* ---- hash functions: HASH, HMAC, HKDF -------------------------------- */

typedef union {
    crypto_generichash_blake2b_state b2;
    crypto_hash_sha256_state sha;
} hash_ctx;

static size_t hashlen(uqn_hash h) { return h == UQN_HASH_BLAKE2B ? 64 : 32; }
static size_t blocklen(uqn_hash h) { return h == UQN_HASH_BLAKE2B ? 128 : 64; }

static void h_init(uqn_hash h, hash_ctx *c)
{
    if (h == UQN_HASH_BLAKE2B) crypto_generichash_blake2b_init(&c->b2, NULL, 0, 64);
    else crypto_hash_sha256_init(&c->sha);
}

static void h_update(uqn_hash h, hash_ctx *c, const uint8_t *p, size_t n)
{
    if (h == UQN_HASH_BLAKE2B) crypto_generichash_blake2b_update(&c->b2, p, n);
    else crypto_hash_sha256_update(&c->sha, p, n);
}

static void h_final(uqn_hash h, hash_ctx *c, uint8_t *out)
{
    if (h == UQN_HASH_BLAKE2B) crypto_generichash_blake2b_final(&c->b2, out, 64);
    else crypto_hash_sha256_final(&c->sha, out);
    sodium_memzero(c, sizeof *c);
}

/* HMAC (RFC 2104) over the concatenation of two inputs; keys are at most
 * HASHLEN bytes here, so never longer than a block. */
static void hmac2(uqn_hash h, const uint8_t *key, size_t klen, const uint8_t *a, size_t alen,
                  const uint8_t *b, size_t blen, uint8_t *out)
{
    uint8_t pad[128], inner[UQN_NOISE_HASHMAX];
    size_t bl = blocklen(h);
    hash_ctx c;
    UQ_ASSERT(klen <= bl);
    memset(pad, 0, sizeof pad);
    memcpy(pad, key, klen);
    for (size_t i = 0; i < bl; i++) pad[i] ^= 0x36;
    h_init(h, &c);
    h_update(h, &c, pad, bl);
    h_update(h, &c, a, alen);
    if (blen) h_update(h, &c, b, blen);
    h_final(h, &c, inner);
    for (size_t i = 0; i < bl; i++) pad[i] ^= 0x36 ^ 0x5c;
    h_init(h, &c);
    h_update(h, &c, pad, bl);
    h_update(h, &c, inner, hashlen(h));
    h_final(h, &c, out);
    sodium_memzero(pad, sizeof pad);
    sodium_memzero(inner, sizeof inner);
}

/* HKDF(chaining_key, ikm) with two outputs, as Noise defines it. */
static void hkdf2(uqn_hash h, const uint8_t *ck, const uint8_t *ikm, size_t ilen,
                  uint8_t *out1, uint8_t *out2)
{
    uint8_t tk[UQN_NOISE_HASHMAX], one = 1, two = 2;
    size_t hl = hashlen(h);
    hmac2(h, ck, hl, ikm, ilen, NULL, 0, tk);
    hmac2(h, tk, hl, &one, 1, NULL, 0, out1);
    hmac2(h, tk, hl, out1, hl, &two, 1, out2);
    sodium_memzero(tk, sizeof tk);
}

/* HKDF with three outputs (MixKeyAndHash of the psk modifiers). */
static void hkdf3(uqn_hash h, const uint8_t *ck, const uint8_t *ikm, size_t ilen,
                  uint8_t *out1, uint8_t *out2, uint8_t *out3)
{
    uint8_t tk[UQN_NOISE_HASHMAX], one = 1, two = 2, three = 3;
    size_t hl = hashlen(h);
    hmac2(h, ck, hl, ikm, ilen, NULL, 0, tk);
    hmac2(h, tk, hl, &one, 1, NULL, 0, out1);
    hmac2(h, tk, hl, out1, hl, &two, 1, out2);
    hmac2(h, tk, hl, out2, hl, &three, 1, out3);
    sodium_memzero(tk, sizeof tk);
}

/* ---- CipherState ------------------------------------------------------ */

static void nonce_bytes(uint64_t n, uint8_t out[12])
{
    memset(out, 0, 4);
    uqi_put_le64(out + 4, n);
}

/* The AEAD of frames from 1 KiB up is OpenSSL's (libcrypto): the same
 * ChaCha20-Poly1305 (RFC 8439) as libsodium's
 * crypto_aead_chacha20poly1305_ietf, byte for byte (the Noise vectors and
 * test_noise check it), 2.4 times as fast on 64 KiB frames on a CPU with
 * AVX-512 (docs/PERFORMANCE.md, "Network"): it bounds a link's bulk
 * throughput. Its set-up costs about 1.5 us a call, so shorter messages
 * (handshakes, a lone small message) stay with libsodium. One OpenSSL
 * context per thread and direction, made on first use and freed when the
 * thread ends. */
#define AEAD_EVP_MIN UQN_CIPHER_STREAM_MIN
static EVP_CIPHER *aead_alg;
static pthread_once_t aead_once = PTHREAD_ONCE_INIT;
static pthread_key_t aead_key;
static __thread EVP_CIPHER_CTX *aead_ctx[2]; /* [1] encrypts, [0] decrypts */

static void aead_ctx_free(void *p)
{
    EVP_CIPHER_CTX **c = p;
    EVP_CIPHER_CTX_free(c[0]);
    EVP_CIPHER_CTX_free(c[1]);
    c[0] = c[1] = NULL;
}

/* OpenSSL's ChaCha20-Poly1305 (AVX-512 code on this machine's Xeon) may
 * return with the upper halves of the vector registers in use: every
 * legacy SSE instruction after it on that thread (glibc's memcpy and
 * memset paths, the compiler's own 16-byte moves) then paid a transition
 * penalty, until the next frame. On the receiving thread that was a
 * quarter of its time (uqi_msg_new and the body copy of each message
 * decoded from the frame). VZEROUPPER after each call ends it (AVX
 * CPUs only: elsewhere it does not exist, and nothing is dirty). */
static bool vec_avx;

static inline void vec_clean(void)
{
#if defined(__x86_64__)
    if (vec_avx) __asm__ volatile("vzeroupper");
#endif
}

static void aead_init_once(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    vec_avx = __builtin_cpu_supports("avx");
#endif
    aead_alg = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    UQ_VERIFY(aead_alg != NULL);
    UQ_VERIFY(pthread_key_create(&aead_key, aead_ctx_free) == 0);
}

static EVP_CIPHER_CTX *aead(int enc)
{
    if (UQ_LIKELY(aead_ctx[enc] != NULL)) return aead_ctx[enc];
    pthread_once(&aead_once, aead_init_once);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    UQ_VERIFY(c && EVP_CipherInit_ex(c, aead_alg, NULL, NULL, NULL, enc) == 1);
    aead_ctx[enc] = c;
    pthread_setspecific(aead_key, aead_ctx);
    return c;
}

/* EVP counts in int: feed lengths in pieces below INT_MAX. A length that
 * is not a multiple of UQN_CIPHER_ALIGN goes as the longest multiple, then
 * the rest: the multiple takes Poly1305's 8-block path whatever the rest
 * is (noise.h; a 65,519-byte frame in one call went 4 blocks at a time). */
#define AEAD_PIECE ((size_t)1 << 30)

static bool aead_update(EVP_CIPHER_CTX *c, uint8_t *out, const uint8_t *in, size_t len)
{
    while (len) {
        size_t k = len < AEAD_PIECE ? len : AEAD_PIECE;
        if (k > UQN_CIPHER_ALIGN && k % UQN_CIPHER_ALIGN) k -= k % UQN_CIPHER_ALIGN;
        int ol;
        bool ok = EVP_CipherUpdate(c, out, &ol, in, (int)k) == 1 && (size_t)ol == k;
        vec_clean();
        if (!ok) return false;
        if (out) out += k;
        in += k;
        len -= k;
    }
    return true;
}

/* ChaCha20-Poly1305 (IETF): out = ciphertext || tag (len + 16 bytes; out
 * may equal pt). */
static void aead_encrypt(const uint8_t k[32], uint64_t n, const uint8_t *ad, size_t adlen,
                         const uint8_t *pt, size_t len, uint8_t *out)
{
    uint8_t nonce[12];
    nonce_bytes(n, nonce);
    if (len < AEAD_EVP_MIN) {
        unsigned long long clen;
        crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, pt, len, ad, adlen, NULL, nonce, k);
        return;
    }
    EVP_CIPHER_CTX *c = aead(1);
    int ol;
    bool ok = EVP_CipherInit_ex(c, NULL, NULL, k, nonce, 1) == 1 && (!adlen || aead_update(c, NULL, ad, adlen)) &&
              aead_update(c, out, pt, len) && EVP_CipherFinal_ex(c, out + len, &ol) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, UQN_NOISE_TAG, out + len) == 1;
    vec_clean();
    UQ_VERIFY(ok);
}

/* The other way: false (and out wiped) if the tag does not verify. */
static bool aead_decrypt(const uint8_t k[32], uint64_t n, const uint8_t *ad, size_t adlen,
                         const uint8_t *ct, size_t len, uint8_t *out)
{
    uint8_t nonce[12], tag[UQN_NOISE_TAG];
    size_t plen = len - UQN_NOISE_TAG;
    if (plen < AEAD_EVP_MIN) { /* checks the tag before writing out */
        unsigned long long ml;
        nonce_bytes(n, nonce);
        return crypto_aead_chacha20poly1305_ietf_decrypt(out, &ml, NULL, ct, len, ad, adlen, nonce, k) == 0;
    }
    memcpy(tag, ct + plen, UQN_NOISE_TAG); /* before out (which may be ct) is written */
    nonce_bytes(n, nonce);
    EVP_CIPHER_CTX *c = aead(0);
    int ol;
    UQ_VERIFY(EVP_CipherInit_ex(c, NULL, NULL, k, nonce, 0) == 1);
    UQ_VERIFY(!adlen || aead_update(c, NULL, ad, adlen));
    UQ_VERIFY(aead_update(c, out, ct, plen));
    UQ_VERIFY(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, UQN_NOISE_TAG, tag) == 1);
    bool ok = EVP_CipherFinal_ex(c, out + plen, &ol) == 1;
    vec_clean();
    if (ok) return true;
    sodium_memzero(out, plen); /* never leave unauthenticated plaintext behind */
    return false;
}

uq_err uqn_cipher_encrypt(uqn_cipher *cs, const uint8_t *ad, size_t adlen,
                          const uint8_t *pt, size_t len, uint8_t *out)
{
    if (!cs->has_key) {
        if (len && out != pt) memmove(out, pt, len);
        return UQ_OK;
    }
    if (cs->n == UINT64_MAX) return UQ_ELIMIT;
    aead_encrypt(cs->k, cs->n, ad, adlen, pt, len, out);
    cs->n++;
    return UQ_OK;
}

uq_err uqn_cipher_decrypt(uqn_cipher *cs, const uint8_t *ad, size_t adlen,
                          const uint8_t *ct, size_t len, uint8_t *out)
{
    if (!cs->has_key) {
        if (len && out != ct) memmove(out, ct, len);
        return UQ_OK;
    }
    if (len < UQN_NOISE_TAG) return UQ_ECORRUPT;
    if (cs->n == UINT64_MAX) return UQ_ELIMIT;
    if (!aead_decrypt(cs->k, cs->n, ad, adlen, ct, len, out)) return UQ_ECRYPTO;
    cs->n++;
    return UQ_OK;
}

/* ---- the AEAD in pieces (noise.h) ---------------------------------------- */
static bool stream_begin(uqn_cipher *cs, size_t plen, int enc)
{
    if (!cs->has_key || plen < AEAD_EVP_MIN || cs->n == UINT64_MAX) return false;
    uint8_t nonce[12];
    nonce_bytes(cs->n, nonce);
    UQ_VERIFY(EVP_CipherInit_ex(aead(enc), NULL, NULL, cs->k, nonce, enc) == 1);
    return true;
}

bool uqn_cipher_seal_begin(uqn_cipher *cs, size_t len) { return stream_begin(cs, len, 1); }

void uqn_cipher_seal_update(const uint8_t *pt, size_t n, uint8_t *out)
{
    if (n) UQ_VERIFY(aead_update(aead_ctx[1], out, pt, n));
}

void uqn_cipher_seal_final(uqn_cipher *cs, uint8_t tag[UQN_NOISE_TAG])
{
    EVP_CIPHER_CTX *c = aead_ctx[1];
    int ol;
    UQ_VERIFY(EVP_CipherFinal_ex(c, tag, &ol) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, UQN_NOISE_TAG, tag) == 1);
    vec_clean();
    cs->n++;
}

bool uqn_cipher_open_begin(uqn_cipher *cs, size_t len)
{
    return len >= UQN_NOISE_TAG && stream_begin(cs, len - UQN_NOISE_TAG, 0);
}

void uqn_cipher_open_update(const uint8_t *ct, size_t n, uint8_t *out)
{
    if (n) UQ_VERIFY(aead_update(aead_ctx[0], out, ct, n));
}

uq_err uqn_cipher_open_final(uqn_cipher *cs, const uint8_t tag[UQN_NOISE_TAG])
{
    EVP_CIPHER_CTX *c = aead_ctx[0];
    uint8_t t[UQN_NOISE_TAG], scratch[UQN_NOISE_TAG];
    memcpy(t, tag, sizeof t);
    int ol;
    UQ_VERIFY(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, UQN_NOISE_TAG, t) == 1);
    bool ok = EVP_CipherFinal_ex(c, scratch, &ol) == 1;
    vec_clean();
    if (!ok) return UQ_ECRYPTO;
    cs->n++;
    return UQ_OK;
}

void uqn_cipher_rekey(uqn_cipher *cs)
{
    uint8_t zeros[32] = {0}, out[48];
    aead_encrypt(cs->k, UINT64_MAX, NULL, 0, zeros, 32, out);
    memcpy(cs->k, out, 32);
    sodium_memzero(out, sizeof out);
}

void uqn_cipher_wipe(uqn_cipher *cs) { sodium_memzero(cs, sizeof *cs); }

/* ---- SymmetricState --------------------------------------------------- */

static void mix_hash(uqn_hs *hs, const uint8_t *p, size_t n)
{
    hash_ctx c;
    h_init(hs->hash, &c);
    h_update(hs->hash, &c, hs->h, hashlen(hs->hash));
    h_update(hs->hash, &c, p, n);
    h_final(hs->hash, &c, hs->h);
}

static void mix_key(uqn_hs *hs, const uint8_t *ikm, size_t n)
{
    uint8_t tk[UQN_NOISE_HASHMAX];
    hkdf2(hs->hash, hs->ck, ikm, n, hs->ck, tk);
    memcpy(hs->cs.k, tk, 32); /* truncated to 32 bytes when HASHLEN is 64 */
    hs->cs.n = 0;
    hs->cs.has_key = true;
    sodium_memzero(tk, sizeof tk);
}

/* MixKeyAndHash (psk token): ck, temp_h, temp_k = HKDF(ck, ikm, 3). */
static void mix_key_and_hash(uqn_hs *hs, const uint8_t *ikm, size_t n)
{
    uint8_t th[UQN_NOISE_HASHMAX], tk[UQN_NOISE_HASHMAX];
    hkdf3(hs->hash, hs->ck, ikm, n, hs->ck, th, tk);
    mix_hash(hs, th, hashlen(hs->hash));
    memcpy(hs->cs.k, tk, 32);
    hs->cs.n = 0;
    hs->cs.has_key = true;
    sodium_memzero(th, sizeof th);
    sodium_memzero(tk, sizeof tk);
}

static uq_err encrypt_and_hash(uqn_hs *hs, const uint8_t *pt, size_t n, uint8_t *out, size_t *olen)
{
    uq_err e = uqn_cipher_encrypt(&hs->cs, hs->h, hashlen(hs->hash), pt, n, out);
    if (e) return e;
    *olen = n + (hs->cs.has_key ? UQN_NOISE_TAG : 0);
    mix_hash(hs, out, *olen);
    return UQ_OK;
}

static uq_err decrypt_and_hash(uqn_hs *hs, const uint8_t *ct, size_t n, uint8_t *out, size_t *olen)
{
    uq_err e = uqn_cipher_decrypt(&hs->cs, hs->h, hashlen(hs->hash), ct, n, out);
    if (e) return e;
    *olen = n - (hs->cs.has_key ? UQN_NOISE_TAG : 0);
    mix_hash(hs, ct, n);
    return UQ_OK;
}

/* ---- HandshakeState (XX) ---------------------------------------------- */

void uqn_x25519_public(const uint8_t sk[32], uint8_t pk[32]) { crypto_scalarmult_base(pk, sk); }

static uq_err dh_mix(uqn_hs *hs, const uint8_t *sk, const uint8_t *pk, uq_errmsg *em)
{
    uint8_t shared[32];
    if (crypto_scalarmult(shared, sk, pk) != 0)
        return uqi_errf(em, UQ_ECRYPTO, "noise: the peer sent a low-order X25519 key");
    mix_key(hs, shared, 32);
    sodium_memzero(shared, sizeof shared);
    return UQ_OK;
}

static uq_err hs_setup(uqn_hs *hs, uqn_hash hash, bool initiator, bool psk0, const uint8_t *prologue,
                       size_t plen, uq_errmsg *em)
{
    memset(hs, 0, sizeof *hs);
    if (hash != UQN_HASH_BLAKE2B && hash != UQN_HASH_SHA256)
        return uqi_errf(em, UQ_EINVAL, "noise: unknown hash function %d", (int)hash);
    if (sodium_init() < 0) return uqi_errf(em, UQ_ECRYPTO, "noise: libsodium failed to initialize");
    hs->hash = hash;
    hs->initiator = initiator;
    hs->psk0 = psk0;
    const char *name = psk0 ? (hash == UQN_HASH_BLAKE2B ? "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b"
                                                        : "Noise_NNpsk0_25519_ChaChaPoly_SHA256")
                            : (hash == UQN_HASH_BLAKE2B ? "Noise_XX_25519_ChaChaPoly_BLAKE2b"
                                                        : "Noise_XX_25519_ChaChaPoly_SHA256");
    size_t nlen = strlen(name);
    if (nlen <= hashlen(hash)) { /* h = the name zero-padded, or its hash if longer (NNpsk0 with SHA-256) */
        memcpy(hs->h, name, nlen);
    } else {
        hash_ctx c;
        h_init(hash, &c);
        h_update(hash, &c, (const uint8_t *)name, nlen);
        h_final(hash, &c, hs->h);
    }
    memcpy(hs->ck, hs->h, hashlen(hash));
    mix_hash(hs, prologue ? prologue : (const uint8_t *)"", plen);
    return UQ_OK;
}

uq_err uqn_hs_init(uqn_hs *hs, uqn_hash hash, bool initiator, const uint8_t *prologue,
                   size_t plen, const uint8_t s_sk[32], uq_errmsg *em)
{
    uq_err e = hs_setup(hs, hash, initiator, false, prologue, plen, em);
    if (e) return e;
    memcpy(hs->s_sk, s_sk, 32);
    uqn_x25519_public(s_sk, hs->s_pk);
    return UQ_OK;
}

uq_err uqn_hs_init_pair(uqn_hs *hs, uqn_hash hash, bool initiator, const uint8_t *prologue, size_t plen,
                        const uint8_t s_sk[32], const uint8_t s_pk[32], uq_errmsg *em)
{
    uq_err e = hs_setup(hs, hash, initiator, false, prologue, plen, em); /* no scalar multiplication: ~60 us here */
    if (e) return e;
    memcpy(hs->s_sk, s_sk, 32);
    memcpy(hs->s_pk, s_pk, 32);
    return UQ_OK;
}

uq_err uqn_hs_init_psk0(uqn_hs *hs, uqn_hash hash, bool initiator, const uint8_t *prologue, size_t plen,
                        const uint8_t psk[32], uq_errmsg *em)
{
    uq_err e = hs_setup(hs, hash, initiator, true, prologue, plen, em);
    if (e) return e;
    memcpy(hs->psk, psk, 32);
    return UQ_OK;
}

/* Ephemeral key pairs made ahead (uqn_noise_prepare), so that a handshake
 * message does not wait for a scalar multiplication (60-70 us here). Each
 * is taken once and wiped from the pool. */
#define EPH_POOL 4
static pthread_mutex_t eph_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    uint8_t sk[32], pk[32];
} eph_pool[EPH_POOL];
static unsigned eph_n;
static uint64_t eph_misses; /* under eph_lock */

static void eph_take(uint8_t sk[32], uint8_t pk[32])
{
    pthread_mutex_lock(&eph_lock);
    if (eph_n) {
        eph_n--;
        memcpy(sk, eph_pool[eph_n].sk, 32);
        memcpy(pk, eph_pool[eph_n].pk, 32);
        sodium_memzero(&eph_pool[eph_n], sizeof eph_pool[eph_n]);
        pthread_mutex_unlock(&eph_lock);
        return;
    }
    eph_misses++;
    pthread_mutex_unlock(&eph_lock);
    randombytes_buf(sk, 32);
    uqn_x25519_public(sk, pk);
}

bool uqn_noise_pool_full(void)
{
    pthread_mutex_lock(&eph_lock);
    bool full = eph_n == EPH_POOL;
    pthread_mutex_unlock(&eph_lock);
    return full;
}

uint64_t uqn_noise_pool_misses(void)
{
    pthread_mutex_lock(&eph_lock);
    uint64_t n = eph_misses;
    pthread_mutex_unlock(&eph_lock);
    return n;
}

bool uqn_noise_prepare(void)
{
    pthread_mutex_lock(&eph_lock);
    bool full = eph_n == EPH_POOL;
    pthread_mutex_unlock(&eph_lock);
    if (full) return false;
    uint8_t sk[32], pk[32];
    randombytes_buf(sk, 32);
    uqn_x25519_public(sk, pk);
    pthread_mutex_lock(&eph_lock);
    if (eph_n < EPH_POOL) {
        memcpy(eph_pool[eph_n].sk, sk, 32);
        memcpy(eph_pool[eph_n].pk, pk, 32);
        eph_n++;
    }
    pthread_mutex_unlock(&eph_lock);
    sodium_memzero(sk, sizeof sk);
    return true;
}

void uqn_hs_set_ephemeral(uqn_hs *hs, const uint8_t e_sk[32])
{
    memcpy(hs->e_sk, e_sk, 32);
    uqn_x25519_public(e_sk, hs->e_pk);
    hs->e_fixed = true;
}

void uqn_hs_share_ephemeral(uqn_hs *dst, const uqn_hs *src)
{
    memcpy(dst->e_sk, src->e_sk, 32);
    memcpy(dst->e_pk, src->e_pk, 32);
    dst->e_fixed = true;
}

uqn_hs_action uqn_hs_next(const uqn_hs *hs)
{
    int msgs = hs->psk0 ? 2 : 3;
    if (hs->failed) return UQN_HS_FAILED;
    if (hs->step == msgs) return UQN_HS_SPLIT;
    if (hs->step > msgs) return UQN_HS_DONE;
    /* messages 0 and 2 go initiator -> responder, message 1 the other way */
    bool initiator_turn = hs->step != 1;
    return initiator_turn == hs->initiator ? UQN_HS_WRITE : UQN_HS_READ;
}

static uq_err fail(uqn_hs *hs, uq_err e)
{
    hs->failed = true;
    return e;
}

uq_err uqn_hs_write(uqn_hs *hs, const uint8_t *payload, size_t plen, uint8_t *out,
                    size_t cap, size_t *out_len, uq_errmsg *em)
{
    *out_len = 0;
    if (uqn_hs_next(hs) != UQN_HS_WRITE)
        return uqi_errf(em, UQ_EINVAL, "noise: not our turn to write a handshake message");
    /* fixed part: e (32), s encrypted (48), payload tag (16 once keyed);
     * psk0: e (32) and the payload's tag in both messages */
    size_t need = hs->psk0 ? 32 + plen + UQN_NOISE_TAG
                           : (hs->step == 0 ? 32 : hs->step == 1 ? 32 + 48 : 48) + plen +
                                 (hs->step == 0 ? 0 : UQN_NOISE_TAG);
    if (need > cap || need > UQN_NOISE_MAX_MSG)
        return fail(hs, uqi_errf(em, UQ_EINVAL, "noise: handshake message of %zu bytes does not fit", need));
    size_t off = 0, n;
    uq_err e = UQ_OK;
    if (hs->psk0) { /* -> psk, e  |  <- e, ee */
        if (hs->step == 0) mix_key_and_hash(hs, hs->psk, 32);
        if (!hs->e_fixed) eph_take(hs->e_sk, hs->e_pk);
        memcpy(out, hs->e_pk, 32);
        mix_hash(hs, hs->e_pk, 32);
        mix_key(hs, hs->e_pk, 32); /* e in a psk handshake */
        off = 32;
        if (hs->step == 1 && (e = dh_mix(hs, hs->e_sk, hs->re, em))) return fail(hs, e);
    } else if (hs->step == 0 || hs->step == 1) { /* e */
        if (!hs->e_fixed) eph_take(hs->e_sk, hs->e_pk);
        memcpy(out, hs->e_pk, 32);
        mix_hash(hs, hs->e_pk, 32);
        off = 32;
    }
    if (hs->psk0) {
        /* done above */
    } else if (hs->step == 1) { /* ee, s, es (responder) */
        if ((e = dh_mix(hs, hs->e_sk, hs->re, em))) return fail(hs, e);
        if ((e = encrypt_and_hash(hs, hs->s_pk, 32, out + off, &n))) goto crypto;
        off += n;
        if ((e = dh_mix(hs, hs->s_sk, hs->re, em))) return fail(hs, e);
    } else if (hs->step == 2) { /* s, se (initiator) */
        if ((e = encrypt_and_hash(hs, hs->s_pk, 32, out, &n))) goto crypto;
        off = n;
        if ((e = dh_mix(hs, hs->s_sk, hs->re, em))) return fail(hs, e);
    }
    if ((e = encrypt_and_hash(hs, payload, plen, out + off, &n))) goto crypto;
    off += n;
    *out_len = off;
    hs->step++;
    return UQ_OK;
crypto:
    return fail(hs, uqi_errf(em, e, "noise: encryption failed (%s)", uq_strerror(e)));
}

uq_err uqn_hs_read(uqn_hs *hs, const uint8_t *msg, size_t len, uint8_t *payload,
                   size_t cap, size_t *plen, uq_errmsg *em)
{
    *plen = 0;
    if (uqn_hs_next(hs) != UQN_HS_READ)
        return uqi_errf(em, UQ_EINVAL, "noise: not our turn to read a handshake message");
    size_t fixed = hs->psk0 ? 32 + 16 : hs->step == 0 ? 32 : hs->step == 1 ? 32 + 48 + 16 : 48 + 16;
    if (len < fixed || len > UQN_NOISE_MAX_MSG)
        return fail(hs, uqi_errf(em, UQ_ECORRUPT, "noise: handshake message %d is %zu bytes, "
                                 "expected at least %zu", hs->step + 1, len, fixed));
    size_t off = 0, n;
    uq_err e;
    if (hs->psk0 && hs->step == 0) mix_key_and_hash(hs, hs->psk, 32); /* psk */
    if (hs->psk0 || hs->step == 0 || hs->step == 1) { /* e */
        memcpy(hs->re, msg, 32);
        mix_hash(hs, hs->re, 32);
        if (hs->psk0) mix_key(hs, hs->re, 32);
        off = 32;
    }
    if (hs->psk0) {
        if (hs->step == 1 && (e = dh_mix(hs, hs->e_sk, hs->re, em))) return fail(hs, e); /* ee */
    } else if (hs->step == 1) { /* ee, s, es (initiator reads the responder) */
        if ((e = dh_mix(hs, hs->e_sk, hs->re, em))) return fail(hs, e);
        if ((e = decrypt_and_hash(hs, msg + off, 48, hs->rs, &n))) goto auth;
        hs->has_rs = true;
        off += 48;
        if (hs->has_es && sodium_memcmp(hs->es_rs, hs->rs, 32) == 0) mix_key(hs, hs->es_dh, 32);
        else if ((e = dh_mix(hs, hs->e_sk, hs->rs, em))) return fail(hs, e);
        sodium_memzero(hs->es_dh, sizeof hs->es_dh);
        hs->has_es = false;
    } else if (hs->step == 2) { /* s, se (responder reads the initiator) */
        if ((e = decrypt_and_hash(hs, msg, 48, hs->rs, &n))) goto auth;
        hs->has_rs = true;
        off = 48;
        if ((e = dh_mix(hs, hs->e_sk, hs->rs, em))) return fail(hs, e);
    }
    size_t rest = len - off, out_n = rest - (hs->cs.has_key ? UQN_NOISE_TAG : 0);
    if (out_n > cap)
        return fail(hs, uqi_errf(em, UQ_ELIMIT, "noise: handshake payload of %zu bytes exceeds %zu", out_n, cap));
    if ((e = decrypt_and_hash(hs, msg + off, rest, payload, &n))) goto auth;
    *plen = n;
    hs->step++;
    return UQ_OK;
auth:
    return fail(hs, uqi_errf(em, e, "noise: handshake message %d failed authentication "
                             "(wrong key or altered in transit)", hs->step + 1));
}

const uint8_t *uqn_hs_remote_static(const uqn_hs *hs) { return hs->has_rs ? hs->rs : NULL; }

void uqn_hs_precompute_es(uqn_hs *hs, const uint8_t rs[32])
{
    if (!hs->initiator || hs->psk0 || hs->failed || hs->step != 1 || hs->has_es) return;
    if (crypto_scalarmult(hs->es_dh, hs->e_sk, rs) != 0) { /* a low-order key: message 2 decides */
        sodium_memzero(hs->es_dh, sizeof hs->es_dh);
        return;
    }
    memcpy(hs->es_rs, rs, 32);
    hs->has_es = true;
}

#define RESUME_LABEL "uqbar-link/1 resume"

void uqn_hs_resumption(const uqn_hs *hs, uint8_t id[16], uint8_t psk[32])
{
    UQ_VERIFY(uqn_hs_next(hs) == UQN_HS_SPLIT);
    uint8_t o1[UQN_NOISE_HASHMAX], o2[UQN_NOISE_HASHMAX];
    hkdf2(hs->hash, hs->ck, (const uint8_t *)RESUME_LABEL, sizeof RESUME_LABEL - 1, o1, o2);
    memcpy(id, o1, 16);
    memcpy(psk, o2, 32);
    sodium_memzero(o1, sizeof o1);
    sodium_memzero(o2, sizeof o2);
}

const uint8_t *uqn_hs_hash(const uqn_hs *hs, size_t *len)
{
    *len = hashlen(hs->hash);
    return hs->h;
}

uq_err uqn_hs_split(uqn_hs *hs, uqn_cipher *send, uqn_cipher *recv, uq_errmsg *em)
{
    if (uqn_hs_next(hs) != UQN_HS_SPLIT)
        return uqi_errf(em, UQ_EINVAL, "noise: the handshake is not finished");
    uint8_t k1[UQN_NOISE_HASHMAX], k2[UQN_NOISE_HASHMAX];
    hkdf2(hs->hash, hs->ck, (const uint8_t *)"", 0, k1, k2);
    uqn_cipher *c1 = hs->initiator ? send : recv, *c2 = hs->initiator ? recv : send;
    memset(c1, 0, sizeof *c1);
    memset(c2, 0, sizeof *c2);
    memcpy(c1->k, k1, 32);
    memcpy(c2->k, k2, 32);
    c1->has_key = c2->has_key = true;
    sodium_memzero(k1, sizeof k1);
    sodium_memzero(k2, sizeof k2);
    /* keep h (channel binding) and rs; drop every secret */
    sodium_memzero(&hs->cs, sizeof hs->cs);
    sodium_memzero(hs->ck, sizeof hs->ck);
    sodium_memzero(hs->s_sk, sizeof hs->s_sk);
    sodium_memzero(hs->e_sk, sizeof hs->e_sk);
    sodium_memzero(hs->psk, sizeof hs->psk);
    hs->step = 4; /* past the last message of either pattern: UQN_HS_DONE */
    return UQ_OK;
}

void uqn_hs_wipe(uqn_hs *hs) { sodium_memzero(hs, sizeof *hs); }
