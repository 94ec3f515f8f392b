;; Hostile example: never returns; the task fails once its fuel (CPU budget) runs out.
(module
  (memory (export "memory") 1)
  (func (export "entrypoint") (param $argc i32) (param $argv i32) (result i32)
    (loop $forever
      (br $forever))
    (i32.const 0)))
