/* uq_strerror() and the helpers that fill a uq_errmsg. */
#include "util/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *uq_strerror(uq_err err)
{
    switch (err) {
    case UQ_OK: return "ok";
    case UQ_ENOMEM: return "out of memory";
    case UQ_EINVAL: return "invalid argument";
    case UQ_EBADMODULE: return "invalid WebAssembly module";
    case UQ_EIMPORT: return "import not allowed";
    case UQ_EEXPORT: return "missing or mistyped export";
    case UQ_ECOMPILE: return "compilation failed";
    case UQ_ETIMEDOUT: return "timed out";
    case UQ_ETRAP: return "trap";
    case UQ_ENOENT: return "not found";
    case UQ_EIO: return "input/output error";
    case UQ_ELIMIT: return "limit exceeded";
    case UQ_ECLOSED: return "closed";
    case UQ_ECORRUPT: return "corrupt data";
    case UQ_EEXIST: return "already exists";
    case UQ_EPERM: return "permission denied";
    case UQ_EBUSY: return "busy";
    case UQ_ECRYPTO: return "cryptographic failure";
    default:
        if (err & UQ_ESYSERR) return strerror((int)(err & ~UQ_ESYSERR));
        return "unknown error";
    }
}

uq_err uqi_errf(uq_errmsg *out, uq_err err, const char *fmt, ...)
{
    if (out) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(out->text, sizeof out->text, fmt, ap);
        va_end(ap);
    }
    return err;
}

uq_err uqi_err_from_errno(int e)
{
    switch (e) {
    case 0: return UQ_OK;
    case ENOMEM: return UQ_ENOMEM;
    case EINVAL: return UQ_EINVAL;
    case ENOENT: return UQ_ENOENT;
    case EIO: return UQ_EIO;
    case EEXIST: return UQ_EEXIST;
    case EACCES: case EPERM: return UQ_EPERM;
    case ETIMEDOUT: return UQ_ETIMEDOUT;
    default: return (uq_err)(UQ_ESYSERR | e);
    }
}
