#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| router_fuzz::promql_template::check(data));
