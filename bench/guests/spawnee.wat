;; kernel_spawn_guest_us: the child that bench/apps/spawner.c spawns. Its
;; _start sends one one-way request to "spawner" (its parent, public) and
;; returns, so the parent learns that the child ran and is ending.
(module
  (import "uqbar" "send" (func $send (param i32) (result i64)))
  (memory (export "memory") 1)
  ;; send descriptor (sdk/sdk_abi.h): kind 1 (request), handle 0,
  ;; target "spawner" at 64 (7 bytes), body "1" at 72 (1 byte), the rest 0
  (data (i32.const 0) "\01\00\00\00\00\00\00\00\40\00\00\00\07\00\00\00\48\00\00\00\01\00\00\00")
  (data (i32.const 64) "spawner")
  (data (i32.const 72) "1")
  (func (export "_start") (drop (call $send (i32.const 0)))))
