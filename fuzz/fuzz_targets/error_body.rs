#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    hoist_registry::fuzzing::error_body(input);
});
