;; host_call_ns, baseline loop: the same 10,000,000 iterations and the same
;; two u32 stores, done by a local function instead of the host.
(module
  (memory (export "memory") 1)
  (func $local_sizes (param $a i32) (param $b i32) (result i32)
    (i32.store (local.get $a) (i32.add (i32.load (local.get $a)) (i32.const 1)))
    (i32.store (local.get $b) (i32.const 9))
    (i32.const 0))
  (func (export "_start")
    (local $i i32)
    (loop $l
      (drop (call $local_sizes (i32.const 16) (i32.const 20)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10000000))))))
