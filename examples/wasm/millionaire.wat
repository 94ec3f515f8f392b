;; Teaclave's millionaire_problem.c in WebAssembly text (Yao's millionaires' problem).
;; Arguments input_file_id1, input_file_id2, output_file_id (sorted, so argv is
;; [input_file_id1, <name1>, input_file_id2, <name2>, output_file_id, <out name>]).
;; Reads at most 10 bytes of each input as a decimal number, writes the data name of the richer
;; input (argv[1] on a tie) to the output and returns the number of bytes written, or -1.
(module
  (import "env" "teaclave_open_input" (func $open_input (param i32) (result i32)))
  (import "env" "teaclave_create_output" (func $create_output (param i32) (result i32)))
  (import "env" "teaclave_read_file" (func $read_file (param i32 i32 i32) (result i32)))
  (import "env" "teaclave_write_file" (func $write_file (param i32 i32 i32) (result i32)))
  (import "env" "teaclave_close_file" (func $close_file (param i32) (result i32)))
  (memory (export "memory") 1)

  ;; Buffers for the two inputs: 16 zeroed bytes each, so a 10-byte read stays NUL-terminated.
  (global $buffer_a i32 (i32.const 1024))
  (global $buffer_b i32 (i32.const 1040))

  (func $atoi (param $p i32) (result i32)
    (local $n i32) (local $digit i32)
    (block $done
      (loop $next
        (local.set $digit (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))
        (br_if $done (i32.gt_u (local.get $digit) (i32.const 9)))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (local.get $digit)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $n))

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $end
      (loop $next
        (br_if $end (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; Read up to 10 bytes of the input called $name into $buffer; 0 on success, -1 on failure.
  (func $load (param $name i32) (param $buffer i32) (result i32)
    (local $fd i32) (local $read i32)
    (local.set $fd (call $open_input (local.get $name)))
    (if (i32.lt_s (local.get $fd) (i32.const 0))
      (then (return (i32.const -1))))
    (local.set $read (call $read_file (local.get $fd) (local.get $buffer) (i32.const 10)))
    (drop (call $close_file (local.get $fd)))
    (select (i32.const -1) (i32.const 0) (i32.lt_s (local.get $read) (i32.const 0))))

  (func (export "entrypoint") (param $argc i32) (param $argv i32) (result i32)
    (local $name_a i32) (local $name_b i32) (local $richer i32) (local $out i32) (local $written i32)
    (if (i32.lt_s (local.get $argc) (i32.const 6))
      (then (return (i32.const -1))))
    (local.set $name_a (i32.load offset=4 (local.get $argv)))
    (local.set $name_b (i32.load offset=12 (local.get $argv)))
    (if (i32.lt_s (call $load (local.get $name_a) (global.get $buffer_a)) (i32.const 0))
      (then (return (i32.const -1))))
    (if (i32.lt_s (call $load (local.get $name_b) (global.get $buffer_b)) (i32.const 0))
      (then (return (i32.const -1))))
    (local.set $richer
      (select (local.get $name_a) (local.get $name_b)
        (i32.ge_u (call $atoi (global.get $buffer_a)) (call $atoi (global.get $buffer_b)))))
    (local.set $out (call $create_output (i32.load offset=20 (local.get $argv))))
    (if (i32.lt_s (local.get $out) (i32.const 0))
      (then (return (i32.const -1))))
    (local.set $written
      (call $write_file (local.get $out) (local.get $richer) (call $strlen (local.get $richer))))
    (drop (call $close_file (local.get $out)))
    (local.get $written)))
