#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stackinstall_fuzz::legacy_passwords(data);
});
