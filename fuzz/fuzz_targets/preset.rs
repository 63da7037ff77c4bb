//! libFuzzer target: see `dreamvid_fuzz::preset`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dreamvid_fuzz::preset(data));
