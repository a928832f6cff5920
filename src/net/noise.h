/* The Noise protocol framework, pattern XX only: Noise_XX_25519_ChaChaPoly
 * with BLAKE2b (what uqbar links use) or SHA-256 (kept so that both published
 * vector sets can be checked). CipherState, SymmetricState, HandshakeState
 * and Split as in revision 34 of the Noise specification, built on
 * libsodium's X25519, ChaCha20-Poly1305 (IETF), BLAKE2b and SHA-256.
 * No I/O here: messages go in and out of caller buffers. */
#ifndef UQ_NET_NOISE_H
#define UQ_NET_NOISE_H

#include "util/util.h"

#define UQN_NOISE_MAX_MSG 65535u  /* largest Noise message (spec section 3) */
#define UQN_NOISE_TAG 16u         /* ChaChaPoly authentication tag */
#define UQN_NOISE_DHLEN 32u       /* X25519 keys */
#define UQN_NOISE_HASHMAX 64u     /* largest HASHLEN (BLAKE2b) */

typedef enum uqn_hash {
    UQN_HASH_BLAKE2B = 0, /* HASHLEN 64, BLOCKLEN 128: uqbar's links */
    UQN_HASH_SHA256 = 1   /* HASHLEN 32, BLOCKLEN 64 */
} uqn_hash;

/* A CipherState: key k and 64-bit nonce n. The nonce goes on the wire as
 * 4 zero bytes then n little-endian (ChaChaPoly in Noise). */
typedef struct uqn_cipher {
    uint8_t k[32];
    uint64_t n;
    bool has_key;
} uqn_cipher;

/* Encrypt len bytes of pt with associated data ad into out (len + 16
 * bytes; out may equal pt), then advance the nonce. Without a key, copies.
 * UQ_ELIMIT when the nonce is exhausted (n reached 2^64-1): the link must
 * be closed, never reused. */
uq_err uqn_cipher_encrypt(uqn_cipher *cs, const uint8_t *ad, size_t adlen,
                          const uint8_t *pt, size_t len, uint8_t *out);
/* Decrypt len bytes of ct (len >= 16) into out (len - 16 bytes). UQ_ECRYPTO
 * if authentication fails (the nonce then does not advance), UQ_ECORRUPT if
 * len < 16, UQ_ELIMIT when the nonce is exhausted. */
uq_err uqn_cipher_decrypt(uqn_cipher *cs, const uint8_t *ad, size_t adlen,
                          const uint8_t *ct, size_t len, uint8_t *out);
/* The same AEAD in pieces, without associated data (transport frames), so
 * that the parts of a frame can come from (encrypt) or go to (decrypt)
 * different buffers with no copy into one first. Only for messages of at
 * least UQN_CIPHER_STREAM_MIN bytes of plaintext: *_begin returns false
 * (nothing started) below that, without a key, or when the nonce is
 * exhausted; use uqn_cipher_encrypt/decrypt then. Between begin and final,
 * the pieces (update) must cover exactly len bytes in order, and no other
 * encryption (seal) or decryption (open) may run on the same thread.
 * open_final: UQ_ECRYPTO if the tag does not verify (the nonce does not
 * advance; what update wrote is unauthenticated: the caller wipes it).
 * Speed: every piece but the last should be a multiple of
 * UQN_CIPHER_ALIGN bytes. OpenSSL's Poly1305 (the AVX-512 IFMA code) takes
 * 8 blocks a step only if the call's count of 16-byte blocks is 8n to
 * 8n+3, else the whole call goes 4 at a time, 1.5 times as long; a piece
 * that ends inside a block shifts the count of every later one
 * (docs/PERFORMANCE.md, "Network, seventh round"). Pieces of other lengths
 * work, only slower. */
#define UQN_CIPHER_STREAM_MIN 1024u
#define UQN_CIPHER_ALIGN 128u
bool uqn_cipher_seal_begin(uqn_cipher *cs, size_t len);
void uqn_cipher_seal_update(const uint8_t *pt, size_t n, uint8_t *out);
void uqn_cipher_seal_final(uqn_cipher *cs, uint8_t tag[UQN_NOISE_TAG]);
bool uqn_cipher_open_begin(uqn_cipher *cs, size_t len);   /* len: ciphertext, tag included */
void uqn_cipher_open_update(const uint8_t *ct, size_t n, uint8_t *out);
uq_err uqn_cipher_open_final(uqn_cipher *cs, const uint8_t tag[UQN_NOISE_TAG]);
/* Rekey(): k = the first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zeros). */
void uqn_cipher_rekey(uqn_cipher *cs);
void uqn_cipher_wipe(uqn_cipher *cs);

/* What the handshake expects next from this side. */
typedef enum uqn_hs_action {
    UQN_HS_WRITE = 0, /* call uqn_hs_write */
    UQN_HS_READ,      /* call uqn_hs_read */
    UQN_HS_SPLIT,     /* finished: call uqn_hs_split */
    UQN_HS_DONE,      /* split done: only h and the remote static remain */
    UQN_HS_FAILED     /* a step failed: discard the state */
} uqn_hs_action;

/* A HandshakeState for XX (-> e; <- e, ee, s, es; -> s, se). Storage is the
 * caller's; wipe it with uqn_hs_wipe. */
typedef struct uqn_hs {
    uqn_hash hash;
    bool initiator;
    bool psk0;           /* Noise_NNpsk0 (uqn_hs_init_psk0) instead of XX */
    int step;            /* 0..3: messages processed */
    bool failed;
    uqn_cipher cs;       /* the SymmetricState's CipherState */
    uint8_t ck[UQN_NOISE_HASHMAX], h[UQN_NOISE_HASHMAX];
    uint8_t s_sk[32], s_pk[32];   /* our static key */
    uint8_t e_sk[32], e_pk[32];   /* our ephemeral key */
    bool e_fixed;                 /* ephemeral given by uqn_hs_set_ephemeral */
    uint8_t rs[32], re[32];       /* remote static and ephemeral */
    bool has_rs;
    uint8_t psk[32];     /* psk0: the pre-shared key */
    uint8_t es_rs[32], es_dh[32]; /* uqn_hs_precompute_es: the responder's static as expected, DH(e, it) */
    bool has_es;
} uqn_hs;

/* Initialize for one side. The protocol name is Noise_XX_25519_ChaChaPoly_
 * <BLAKE2b|SHA256>; prologue (may be NULL when plen is 0) is mixed into h;
 * s_sk is our X25519 static secret. UQ_EINVAL on a bad hash choice. */
uq_err uqn_hs_init(uqn_hs *hs, uqn_hash hash, bool initiator, const uint8_t *prologue,
                   size_t plen, const uint8_t s_sk[32], uq_errmsg *em);
/* The same with our static key pair given whole (s_pk must be s_sk's public
 * key): saves deriving it on every handshake. */
uq_err uqn_hs_init_pair(uqn_hs *hs, uqn_hash hash, bool initiator, const uint8_t *prologue, size_t plen,
                        const uint8_t s_sk[32], const uint8_t s_pk[32], uq_errmsg *em);
/* Noise_NNpsk0_25519_ChaChaPoly_<hash> (-> psk, e; <- e, ee): no static
 * keys, both sides prove they hold psk (32 bytes), one DH per side. Two
 * messages; each payload is encrypted (16-byte tag) since the psk keys the
 * first. uqbar resumes links with it (docs/PROTOCOL.md, "Resumption"). */
uq_err uqn_hs_init_psk0(uqn_hs *hs, uqn_hash hash, bool initiator, const uint8_t *prologue, size_t plen,
                        const uint8_t psk[32], uq_errmsg *em);
/* For test vectors only: use e_sk as the ephemeral secret instead of a
 * fresh random one. Call before the first message. */
void uqn_hs_set_ephemeral(uqn_hs *hs, const uint8_t e_sk[32]);
/* Give dst (before its first message) the ephemeral key pair src already
 * used, without a scalar multiplication: a resumption attempt's e serves as
 * the XX message 1 the responder may answer instead. */
void uqn_hs_share_ephemeral(uqn_hs *dst, const uqn_hs *src);
/* Once the handshake is finished (UQN_HS_SPLIT, before uqn_hs_split): a
 * 16-byte ticket id and a 32-byte resumption secret, derived from the final
 * chaining key: HKDF(ck, "uqbar-link/1 resume") -> (id || ..., psk || ...).
 * Both sides get the same; nobody else can (ck is secret). */
void uqn_hs_resumption(const uqn_hs *hs, uint8_t id[16], uint8_t psk[32]);
uqn_hs_action uqn_hs_next(const uqn_hs *hs);
/* Write the next handshake message carrying payload (plen bytes) into out
 * (cap bytes); *out_len is its length (at most 65,535). UQ_EINVAL when it is
 * not our turn or the message would be too long; UQ_ECRYPTO if a DH result
 * is all zeros (a low-order remote key). A failure fails the handshake. */
uq_err uqn_hs_write(uqn_hs *hs, const uint8_t *payload, size_t plen, uint8_t *out,
                    size_t cap, size_t *out_len, uq_errmsg *em);
/* Read the next handshake message; its decrypted payload goes to payload
 * (cap bytes, *plen its length). UQ_ECORRUPT if the message is too short or
 * too long, UQ_ECRYPTO if it fails authentication or a DH result is zero.
 * A failure fails the handshake. */
uq_err uqn_hs_read(uqn_hs *hs, const uint8_t *msg, size_t len, uint8_t *payload,
                   size_t cap, size_t *plen, uq_errmsg *em);
/* The remote static public key, once received (NULL before). */
const uint8_t *uqn_hs_remote_static(const uqn_hs *hs);
/* XX initiator, message 1 written: DH(e, rs) for the static key rs the
 * responder is expected to have (from the directory), done while waiting
 * for message 2 and used for its es if the responder's static turns out to
 * be rs (compared in constant time; else computed then). One X25519 less
 * on the handshake's path; the bytes are the same. No effect otherwise. */
void uqn_hs_precompute_es(uqn_hs *hs, const uint8_t rs[32]);
/* The handshake hash h (HASHLEN bytes in *len): a channel binding. */
const uint8_t *uqn_hs_hash(const uqn_hs *hs, size_t *len);
/* After the last message: the two transport CipherStates (ours to send,
 * ours to receive), and the handshake state is wiped except h. */
uq_err uqn_hs_split(uqn_hs *hs, uqn_cipher *send, uqn_cipher *recv, uq_errmsg *em);
void uqn_hs_wipe(uqn_hs *hs);

/* Make one ephemeral key pair ahead for a future handshake, if the small
 * pool (4) is not full (false when it is): call it when idle (the net
 * thread does when no event waits). Handshakes work without it (they make
 * their own). */
bool uqn_noise_prepare(void);
bool uqn_noise_pool_full(void);
/* Ephemeral key pairs a handshake found no prepared one for and made on
 * its path, in this process so far. */
uint64_t uqn_noise_pool_misses(void);

/* X25519 public key for a secret (clamped as X25519 does). */
void uqn_x25519_public(const uint8_t sk[32], uint8_t pk[32]);

#endif
