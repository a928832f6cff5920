(module (memory (export "memory") 20000) (func (export "_start")))
