//! libFuzzer target: see `dreamvid_fuzz::weights`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dreamvid_fuzz::weights(data));
