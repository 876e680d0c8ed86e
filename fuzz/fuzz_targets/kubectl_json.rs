#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // A crash-looping pod makes doctor ask `kubectl logs`: no program
        // runs while fuzzing (it is not found).
        // SAFETY: set once before any thread of this process starts.
        unsafe { std::env::set_var("PATH", "/nonexistent") };
    },
    |data: &[u8]| {
        stackinstall_fuzz::kubectl_json(data);
    }
);
