/* Fibers: stacks with a guard page and a context switch. On x86-64 the switch
 * is hand-written (it saves only the callee-saved registers); elsewhere
 * ucontext is the portable, slower fallback. */
#ifndef UQ_FIBER_H
#define UQ_FIBER_H

#include "util/util.h"

#if defined(__x86_64__) && !defined(UQ_FIBER_UCONTEXT)
#define UQI_FIBER_ASM 1
#else
#include <ucontext.h>
#define UQI_FIBER_ASM 0
#endif

typedef struct uqi_fiber {
    void *sp;              /* saved stack pointer (asm switch) */
    uint8_t *map;          /* whole mapping: guard page then stack; NULL for a thread's own */
    size_t map_size;
    uint8_t *guard_lo, *guard_hi; /* the guard page: a fault here means stack exhausted */
#if !UQI_FIBER_ASM
    ucontext_t uc;
#endif
} uqi_fiber;

#define UQI_FIBER_DEFAULT_STACK (1u << 20)

/* Make f a fiber that will run fn(arg) on a fresh stack of stack_size bytes
 * (rounded to pages) when first switched to. fn must never return: it ends
 * by switching away for the last time. */
uq_err uqi_fiber_init(uqi_fiber *f, size_t stack_size, void (*fn)(void *), void *arg);
/* Release the stack of a fiber that is not running. */
void uqi_fiber_fini(uqi_fiber *f);
/* Save the current context in from and resume to. */
void uqi_fiber_switch(uqi_fiber *from, uqi_fiber *to);

#endif
