;; Checks that its memory starts zero, dirties it, grows it by 1 page(s),
;; checks the new pages are zero and dirties the last one: pooled memories
;; must come back zeroed (rt.c: up to 128 KiB by a scan, beyond by madvise).
(module
  (memory (export "memory") 1)
  (func $zero (param $lo i32) (param $hi i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $lo) (local.get $hi)))
        (if (i64.ne (i64.load (local.get $lo)) (i64.const 0)) (then unreachable))
        (local.set $lo (i32.add (local.get $lo) (i32.const 8)))
        (br $l))))
  (func (export "_start")
    (call $zero (i32.const 0) (i32.const 65536))
    (i64.store (i32.const 0) (i64.const -1))
    (i64.store (i32.const 32768) (i64.const -1))
    (i64.store (i32.const 65528) (i64.const -1))
    (if (i32.ne (memory.grow (i32.const 1)) (i32.const 1)) (then unreachable))
    (call $zero (i32.const 65536) (i32.mul (i32.const 65536) (i32.const 2)))
    (i64.store (i32.const 131064) (i64.const -1))))
