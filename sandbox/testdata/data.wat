;; Data segments out of order, near and far apart: _start prints the first
;; 2 KiB of memory, so a test can see that merging them changed nothing.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "abc")
  (data (i32.const 103) "def")
  (data (i32.const 10) "xy")
  (data (i32.const 2000) "far")
  (data (i32.const 1500) "mid")
  (func (export "_start")
    ;; The iovec lives past the printed range.
    (i32.store (i32.const 4096) (i32.const 0))
    (i32.store (i32.const 4100) (i32.const 2048))
    (drop (call $fd_write (i32.const 1) (i32.const 4096) (i32.const 1) (i32.const 4104)))))
