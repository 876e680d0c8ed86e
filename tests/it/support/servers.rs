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

/// The authorization token moto's ECR hands out (base64 of
/// `AWS:password`), asked for directly.
#[allow(dead_code)]
pub fn moto_token() -> String {
    let endpoint = setting("STACKINSTALL_TEST_ECR_ENDPOINT");
    let answer: serde_json::Value = reqwest::blocking::Client::new()
        .post(&endpoint)
        .header("X-Amz-Target", "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIATEST/20240101/ap-south-1/ecr/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body("{}")
        .send()
        .and_then(|response| response.json())
        .expect("moto answers GetAuthorizationToken");
    answer["authorizationData"][0]["authorizationToken"]
        .as_str()
        .unwrap()
        .to_string()
}
