#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kao_fuzz::tflite(data));
