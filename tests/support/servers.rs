//! The contract with `tests/run-all.sh`: the test servers it starts and the
//! `STACKINSTALL_TEST_*` variables that say where they are. A test that
//! needs them fails loudly when they are not there. Included with `#[path]`.
#![allow(dead_code, clippy::disallowed_methods)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// A test server's setting; panics, naming the way out, without the servers.
pub fn setting(name: &str) -> String {
    if std::env::var("STACKINSTALL_TEST_SERVICES").as_deref() != Ok("1") {
        panic!(
            "these tests need the test servers: run tests/run-all.sh (STACKINSTALL_TEST_SERVICES is not set)"
        );
    }
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run tests/run-all.sh"))
}

/// A name (user, database) no other test or test run uses.
pub fn unique(label: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "si{}{}_{label}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs a future to its end on a runtime of its own.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}
