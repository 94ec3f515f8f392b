;; Hostile example: traps at once (C's abort()); the task fails with "wasm trap: ...".
(module
  (memory (export "memory") 1)
  (func (export "entrypoint") (param $argc i32) (param $argv i32) (result i32)
    unreachable))
