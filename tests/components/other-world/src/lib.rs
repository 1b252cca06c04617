//! A valid component that implements some other world than TaskFlow's: the
//! host must refuse it as a policy, naming what is missing.

// A component only: elsewhere the crate is empty, since its exported names
// (`taskflow:auth/policy@0.3.0#...`) link only for WebAssembly.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    inline: "
        package test:other@1.0.0;
        world other {
            export ping: func() -> u32;
        }
    ",
});

struct Other;

impl Guest for Other {
    fn ping() -> u32 {
        42
    }
}

export!(Other);
