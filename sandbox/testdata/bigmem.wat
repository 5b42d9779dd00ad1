;; Declares a minimum of 8192 pages (512 MiB), above the default cap.
(module
  (memory (export "memory") 8192)
  (func (export "_start")))
