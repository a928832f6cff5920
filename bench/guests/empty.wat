;; instantiate_cached_us: a module with one page of memory whose _start
;; returns at once.
(module
  (memory (export "memory") 1)
  (func (export "_start")))
