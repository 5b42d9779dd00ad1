;; Imports a global, which no WASI host provides.
(module
  (import "env" "g" (global $g i32))
  (memory (export "memory") 1)
  (func (export "_start")))
