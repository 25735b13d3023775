#![no_main]
libfuzzer_sys::fuzz_target!(init: kao_fuzz::init(), |data: &[u8]| kao_fuzz::records_parquet(data));
