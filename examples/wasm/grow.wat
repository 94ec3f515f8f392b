;; Hostile example: grows its memory a page at a time without bound and, like C's malloc failure
;; path, aborts when a grow is refused; the task fails with the memory limit as its reason.
(module
  (memory (export "memory") 1)
  (func (export "entrypoint") (param $argc i32) (param $argv i32) (result i32)
    (loop $more
      (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1))
        (then unreachable))
      (br $more))
    (i32.const 0)))
