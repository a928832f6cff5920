(module (memory (export "memory") 1) (type $t (func (param i32))) (table 1 funcref) (elem (i32.const 0) $f) (func $f) (func (export "_start") (call_indirect (type $t) (i32.const 1) (i32.const 0))))
