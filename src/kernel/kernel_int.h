/* Internal interface between the kernel's files (kernel.c, kcmd.c). */
#ifndef UQ_KERNEL_INT_H
#define UQ_KERNEL_INT_H

#include "kernel/kernel.h"

/* Handle a request addressed to node@kernel; takes ownership of m and ctx. */
void uqi_kcmd_handle(uqi_kproc *from, uqi_msg *m, uint8_t *ctx, size_t ctx_len);
/* Deliver a response from the kernel to `to` for request req, carrying ctx
 * (owned by the callee) and optional metadata. */
void uqi_kernel_reply(uqi_kproc *to, const uqi_msg *req, const char *body, const char *metadata, uint8_t *ctx,
                      size_t ctx_len);

#endif
