;; Teaclave's simple_add.c in WebAssembly text: entrypoint returns atoi(argv[1]) + atoi(argv[3]).
;; With arguments {"adder1": "3", "adder2": "4"} argv is ["adder1", "3", "adder2", "4"] and it returns 7.
(module
  (memory (export "memory") 1)

  ;; int atoi(const char *s): optional '-', then decimal digits up to the first non-digit.
  (func $atoi (param $p i32) (result i32)
    (local $n i32) (local $negative i32) (local $digit i32)
    (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 45))
      (then
        (local.set $negative (i32.const 1))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))))
    (block $done
      (loop $next
        (local.set $digit (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))
        (br_if $done (i32.gt_u (local.get $digit) (i32.const 9)))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (local.get $digit)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (select (i32.sub (i32.const 0) (local.get $n)) (local.get $n) (local.get $negative)))

  (func (export "entrypoint") (param $argc i32) (param $argv i32) (result i32)
    (if (i32.lt_s (local.get $argc) (i32.const 4))
      (then (return (i32.const -1))))
    (i32.add
      (call $atoi (i32.load offset=4 (local.get $argv)))
      (call $atoi (i32.load offset=12 (local.get $argv))))))
