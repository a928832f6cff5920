;; host_call_nop_ns: the bare guest->host transition, 10,000,000 calls of
;; wasi_snapshot_preview1.proc_raise, which returns ENOSYS without work.
(module
  (import "wasi_snapshot_preview1" "proc_raise"
    (func $proc_raise (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32)
    (loop $l
      (drop (call $proc_raise (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10000000))))))
