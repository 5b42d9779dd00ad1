;; The module of `anthill bench --wasm`: it copies stdin to stdout, 64 KiB at a
;; time, with fd_read and fd_write. bench_echo.wasm is `wat2wasm bench_echo.wat`
;; (TestBenchEchoModuleIsItsSource checks it), embedded so the bench needs no
;; toolchain.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  ;; 0: an iovec {buf, len}; 8: the count read or written; 1024: the buffer.
  (memory (export "memory") 2)
  (func (export "_start")
    (local $errno i32)
    (loop $copy
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 65536))
      (local.set $errno
        (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (if (local.get $errno) (then (call $proc_exit (i32.const 1))))
      (if (i32.eqz (i32.load (i32.const 8))) (then (return)))
      ;; Write what was read: the iovec's length becomes the count read.
      (i32.store (i32.const 4) (i32.load (i32.const 8)))
      (local.set $errno
        (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (if (local.get $errno) (then (call $proc_exit (i32.const 2))))
      (br $copy))))
