#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lexforge_fuzz::chunk(data));
