;; A reactor, not a command: it has no _start.
(module
  (memory (export "memory") 1)
  (func (export "work")))
