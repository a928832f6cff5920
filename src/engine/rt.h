/* uqbar's own implementation of the wasm-rt.h runtime API that wasm2c output
 * calls: traps land in the current task (never a global jmp_buf), memories
 * are 8 GiB guard reservations freed whole and pooled, growth is capped per
 * process, and function types are interned once for all modules. */
#ifndef UQ_RT_H
#define UQ_RT_H

#include "util/util.h"

/* Unwind codes carried by a task's trap_jmp. 1..9 mirror wasm_rt_trap_t. */
enum {
    UQI_TRAP_OOB = 1,
    UQI_TRAP_INT_OVERFLOW = 2,
    UQI_TRAP_DIV_BY_ZERO = 3,
    UQI_TRAP_INVALID_CONVERSION = 4,
    UQI_TRAP_UNREACHABLE = 5,
    UQI_TRAP_CALL_INDIRECT = 6,
    UQI_TRAP_UNCAUGHT_EXCEPTION = 7,
    UQI_TRAP_EXHAUSTION = 8,
    UQI_UNWIND_EXIT = 100,       /* proc_exit: not a trap */
    UQI_UNWIND_RESOURCE = 101,   /* instantiation exceeded a limit */
    UQI_UNWIND_KILLED = 102,     /* the kernel ended the process */
};

/* One line naming the trap or unwind reason. */
const char *uqi_trap_text(int code);

/* Reservation of a memory: [lo, lo + UQI_MEM_RESERVE). */
#define UQI_MEM_RESERVE ((size_t)8 << 30) + ((size_t)1 << 16)

/* Bytes of linear memory and tables currently committed by all instances. */
uint64_t uqi_rt_committed_bytes(void);

#endif
