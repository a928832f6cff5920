/* Capabilities: an issuer address plus parameters (a JSON value), granted to
 * one holder and signed by the issuing node's Ed25519 key, so that another
 * node can verify what ours issued. The kernel keeps each process's set;
 * a set is the only authority (a signed token of a capability that was
 * dropped or revoked is no longer valid). Format and rules:
 * docs/CAPABILITIES.md. This file knows nothing of the node lock: the
 * kernel calls it with the lock held. */
#ifndef UQ_CAPS_H
#define UQ_CAPS_H

#include <jansson.h>

#include "kernel/msg.h"

#define UQI_CAP_PARAMS_MAX 4096  /* canonical JSON of the parameters, bytes */
#define UQI_CAP_SIG_DOMAIN "uqbar-cap-1"

/* One granted capability, owned by its holder's set. */
typedef struct uqi_cap {
    struct uqi_cap *hnext;              /* holder's set chain */
    struct uqi_cap *inext, **iprev;     /* the issuer's list of what it issued */
    uint32_t hash;                      /* of (issuer, params) */
    uqi_addr issuer, holder;
    struct uqi_kproc *holder_kp;        /* the kernel's record of the holder */
    uint64_t serial;                    /* unique per grant (random start, counted) */
    const uint8_t *signer;              /* the issuing node's secret key until sig is made, then NULL */
    uint8_t sig[64];                    /* Ed25519 over uqi_cap_signed_bytes: read it with uqi_cap_sig */
    char params[];                      /* canonical JSON, NUL-terminated */
} uqi_cap;

typedef struct uqi_capset {
    uqi_cap **b;
    uint32_t nb, n;
} uqi_capset;

/* ---- parameters and references ---------------------------------------- */
/* Canonical JSON of v (compact, keys sorted), malloc'ed; NULL if too long. */
char *uqi_cap_canon(json_t *v);
/* {"issuer":"node@process"|"process", "params": JSON value} -> ref. */
uq_err uqi_capref_from_json(json_t *v, const char *local_node, uqi_capref *out, uq_errmsg *em);
/* A JSON array of such objects; *out is malloc'ed (free with uqi_caprefs_free). */
uq_err uqi_caprefs_from_json(json_t *arr, const char *local_node, uqi_capref **out, uint32_t *n, uq_errmsg *em);
void uqi_caprefs_free(uqi_capref *r, uint32_t n);
/* "issuer-address params" for messages to people. */
void uqi_capref_describe(const uqi_addr *issuer, const char *params, char *buf, size_t cap);

/* ---- sets --------------------------------------------------------------- */
uint32_t uqi_cap_hash(const uqi_addr *issuer, const char *params);
uqi_cap *uqi_capset_find(const uqi_capset *s, const uqi_addr *issuer, const char *params, uint32_t hash);
void uqi_capset_add(uqi_capset *s, uqi_cap *c);
void uqi_capset_remove(uqi_capset *s, uqi_cap *c);

/* A new record for holder, to be signed with sk (which must outlive it) when
 * its signature is first needed: signing costs about 20 us, and most
 * capabilities (those a spawn gives a parent over its child) never leave
 * the node as a token. */
uqi_cap *uqi_cap_new(const uqi_addr *issuer, const char *params, const uqi_addr *holder, const uint8_t sk[64]);
/* The same with hash = uqi_cap_hash(issuer, params) already known. */
uqi_cap *uqi_cap_new_h(const uqi_addr *issuer, const char *params, uint32_t hash, const uqi_addr *holder,
                       const uint8_t sk[64]);

/* ---- signatures and tokens ---------------------------------------------- */
/* The signed bytes (see docs/CAPABILITIES.md); returns their length. */
size_t uqi_cap_signed_bytes(const uqi_addr *issuer, const uqi_addr *holder, uint64_t serial, const char *params,
                            uint8_t *buf, size_t cap);
/* The signature of c, made now if it was not yet (under the lock that
 * guards c's set). */
const uint8_t *uqi_cap_sig(uqi_cap *c);
/* The token of c: {"issuer","holder","params" (canonical text),"serial","sig"};
 * signs c first if it was not yet (under the lock that guards c's set). */
json_t *uqi_cap_token(uqi_cap *c);
/* Parse a token and check its signature with pk. UQ_ECRYPTO: the signature
 * does not match (forged or altered); UQ_EINVAL: not a token. On success
 * *out holds the fields (sig checked), to be matched against a set. */
uq_err uqi_cap_token_check(const char *text, size_t len, const uint8_t pk[32], uqi_cap **out, uq_errmsg *em);

#endif
