;; Tries to accept a connection on a preopened socket, fd 3, and exits
;; with the errno of sock_accept: there is no socket, so it is non-zero.
(module
  (import "wasi_snapshot_preview1" "sock_accept"
    (func $sock_accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $proc_exit (call $sock_accept (i32.const 3) (i32.const 0) (i32.const 0)))))
