#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| router_fuzz::matcher::check(data));
