//! The API as its real clients see it: Swagger UI in headless Chromium,
//! and schemathesis generating requests from the OpenAPI document. Both
//! tools come from `just test-tools` (Debian's chromium and chromium-driver,
//! schemathesis and openapi-spec-validator from PyPI in target/test-tools).

#[path = "../api/harness.rs"]
#[allow(dead_code)]
mod harness;

mod browser;
mod chromium;
mod readme;
mod schema;
