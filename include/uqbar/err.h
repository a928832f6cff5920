/* uqbar: the one error enum of the runtime, and its text. */
#ifndef UQBAR_ERR_H
#define UQBAR_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

#define UQ_API __attribute__((visibility("default")))

/* Every function of uqbar that can fail returns one of these. Results travel
 * in out-parameters; detail for a human travels in a uq_errmsg when given. */
typedef enum uq_err {
    UQ_OK = 0,
    UQ_ENOMEM,      /* out of memory (host) */
    UQ_EINVAL,      /* bad argument */
    UQ_EBADMODULE,  /* not a valid WebAssembly module */
    UQ_EIMPORT,     /* module imports something the host does not offer */
    UQ_EEXPORT,     /* module lacks a required export, or has the wrong type */
    UQ_ECOMPILE,    /* translation or native compilation failed */
    UQ_ETIMEDOUT,   /* a time limit was hit */
    UQ_ETRAP,       /* the guest trapped */
    UQ_ENOENT,      /* no such file or object */
    UQ_EIO,         /* input/output error */
    UQ_ELIMIT,      /* a configured limit was hit */
    UQ_ECLOSED,     /* object closed or shutting down */
    UQ_ECORRUPT,    /* on-disk or on-wire data failed validation */
    UQ_EEXIST,      /* already exists */
    UQ_EPERM,       /* not permitted (capability missing) */
    UQ_EBUSY,       /* resource busy, try again */
    UQ_ECRYPTO,     /* a cryptographic operation failed */
    UQ_ESYSERR = 0x10000000 /* OR-ed with errno for unmapped system errors */
} uq_err;

/* A buffer for a one-line human-readable explanation of an error. */
typedef struct uq_errmsg {
    char text[512];
} uq_errmsg;

/* Static text for an error code; never NULL. */
UQ_API const char *uq_strerror(uq_err err);

#ifdef __cplusplus
}
#endif
#endif
