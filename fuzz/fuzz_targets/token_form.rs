//! The `/token` form as the host parses it: never a panic, and what it
//! returns is only ever the known parameters, each once.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../host/src/form.rs"]
mod form;

const KNOWN: [&str; 4] = ["grant_type", "username", "password", "scope"];

fuzz_target!(|data: &[u8]| {
    match form::parse(data, &KNOWN) {
        Ok(params) => {
            assert!(params.keys().all(|k| KNOWN.contains(&k.as_str())));
            let scope = params.get("scope").cloned();
            if let Some(scopes) = form::scopes(scope) {
                assert!(!scopes.is_empty());
                assert!(
                    scopes
                        .iter()
                        .all(|s| !s.is_empty() && !s.contains(char::is_whitespace))
                );
                for s in &scopes {
                    let _ = policy_kit::scope::is_valid_token(s);
                }
            }
        }
        Err(form::FormError::Repeated(name)) => assert!(KNOWN.contains(&name.as_str())),
    }
});
