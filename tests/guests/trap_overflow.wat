(module (memory (export "memory") 1) (func (export "_start") (drop (i32.div_s (i32.const -2147483648) (i32.const -1)))))
