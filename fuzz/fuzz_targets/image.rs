//! libFuzzer target: see `dreamvid_fuzz::image`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dreamvid_fuzz::image(data));
