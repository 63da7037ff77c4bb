//! libFuzzer target: see `dreamvid_fuzz::job`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dreamvid_fuzz::job(data));
