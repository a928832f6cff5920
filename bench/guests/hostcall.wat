;; host_call_ns, measured loop: 10,000,000 calls of the host function
;; wasi_snapshot_preview1.args_sizes_get (writes two u32s into memory).
(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32)
    (loop $l
      (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10000000))))))
