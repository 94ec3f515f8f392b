;; Hostile example: hands the host pointers outside its memory. Every such call must return -1
;; (never crash the host), so with an input named by argv[1] this returns -5, the sum of five -1s;
;; -100 means the input could not be opened at all.
(module
  (import "env" "teaclave_open_input" (func $open_input (param i32) (result i32)))
  (import "env" "teaclave_read_file" (func $read_file (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)

  (func (export "entrypoint") (param $argc i32) (param $argv i32) (result i32)
    (local $fd i32) (local $last i32)
    (if (i32.lt_s (local.get $argc) (i32.const 2))
      (then (return (i32.const -100))))
    (local.set $fd (call $open_input (i32.load offset=4 (local.get $argv))))
    (if (i32.lt_s (local.get $fd) (i32.const 0))
      (then (return (i32.const -100))))
    ;; The last byte of memory, not NUL: a name that runs off the end.
    (local.set $last (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 1)))
    (i32.store8 (local.get $last) (i32.const 120))
    (i32.add
      (i32.add
        (i32.add
          (call $open_input (i32.const -16))                                   ;; name far out of range
          (call $open_input (local.get $last)))                                ;; unterminated name
        (i32.add
          (call $read_file (local.get $fd) (i32.const -16) (i32.const 16))     ;; buffer out of range
          (call $read_file (local.get $fd) (local.get $last) (i32.const 100)))) ;; buffer runs off the end
      (call $read_file (local.get $fd) (i32.const 0) (i32.const -1)))))        ;; negative size
