//! Micro benchmark: one Bearer decision (and one issuance, with a cheap
//! password hash so that argon2 does not drown the rest) through the policy
//! component, against the same work done natively with `jsonwebtoken`.
//!
//! The same calls through the Python policy (`just python-policy`), its
//! instance's size, and the host's argon2id and Ed25519 primitives called
//! natively against the same work asked for through the Rust policy.
//!
//! Run with `just bench`; prints a table of ratios measured in this run.
//!
//! To compare two builds of the policy: `TASKFLOW_BENCH_COMPONENT` is the
//! one measured (by default the workspace's `guest-auth`), and
//! `TASKFLOW_BENCH_BASELINE`, when set, another build it is timed against,
//! interleaved in this process.

mod common;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use argon2::{
    Algorithm as Argon2Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::Criterion;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use taskflow::policy::{
    AccessRequest, Directory, DirectoryFuture, KeyAlgorithm, Lookup, PolicyConfig, PolicyHandle,
    PolicySettings, SandboxLimits, SigningKey, TokenStatus, UserRecord,
};

const SECRET: &[u8] = b"benchmark-secret-of-thirty-two-bytes-or-more";
const PASSWORD: &str = "benchmark password";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One user whose hash uses argon2's cheapest parameters.
struct OneUser(UserRecord);

impl Directory for OneUser {
    fn find_user<'a>(
        &'a self,
        username: &'a str,
        _: Lookup,
    ) -> DirectoryFuture<'a, Option<UserRecord>> {
        let found = (username == self.0.username).then(|| self.0.clone());
        Box::pin(async move { Ok(found) })
    }

    fn token_status<'a>(
        &'a self,
        _: &'a str,
        subject: &'a str,
        _: u64,
    ) -> DirectoryFuture<'a, TokenStatus> {
        let user = (subject == self.0.username).then(|| self.0.clone());
        Box::pin(async move {
            Ok(TokenStatus {
                revoked: false,
                user,
            })
        })
    }
}

fn cheap_argon2() -> Argon2<'static> {
    Argon2::new(
        Argon2Algorithm::Argon2id,
        Version::V0x13,
        Params::new(8, 1, 1, None).unwrap(),
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Native {
    kid: String,
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl Native {
    /// Verifies tokens of `algorithm` with `decoding`; issues HS256 tokens.
    fn new(kid: &str, algorithm: Algorithm, decoding: DecodingKey) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&["taskflow"]);
        validation.set_audience(&["taskflow-api"]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Native {
            kid: kid.to_owned(),
            decoding,
            encoding: EncodingKey::from_secret(SECRET),
            validation,
        }
    }

    /// The same checks the component makes: typ, kid, signature, claims, scope.
    fn decide(&self, authorization: &str, scope: &str) -> bool {
        let Some(token) = authorization.strip_prefix("Bearer ") else {
            return false;
        };
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return false;
        };
        if header.typ.as_deref() != Some("at+jwt") || header.kid.as_deref() != Some(&self.kid) {
            return false;
        }
        match jsonwebtoken::decode::<Value>(token, &self.decoding, &self.validation) {
            Ok(data) => data.claims["scope"]
                .as_str()
                .is_some_and(|s| s.split(' ').any(|x| x == scope)),
            Err(_) => false,
        }
    }

    fn issue(&self, hash: &str) -> Option<String> {
        cheap_argon2()
            .verify_password(PASSWORD.as_bytes(), hash)
            .ok()?;
        let now = now();
        let claims = json!({
            "iss": "taskflow", "aud": "taskflow-api", "sub": "bench", "exp": now + 1800,
            "iat": now, "nbf": now, "jti": "0123456789abcdef0123456789abcdef", "scope": "tasks:read",
        });
        let header = Header {
            typ: Some("at+jwt".into()),
            kid: Some(self.kid.clone()),
            ..Header::new(Algorithm::HS256)
        };
        jsonwebtoken::encode(&header, &claims, &self.encoding).ok()
    }
}

fn main() {
    // Calls are futures; a current-thread runtime polls them on this thread,
    // as a request's task would be polled on a worker.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let kid = taskflow::keys::key_id(SECRET);
    let hash = cheap_argon2()
        .hash_password(PASSWORD.as_bytes())
        .unwrap()
        .to_string();
    let cache = tempfile::tempdir().unwrap();
    // TASKFLOW_BENCH_COMPONENT compares another build of the policy.
    let rust_component = std::env::var_os("TASKFLOW_BENCH_COMPONENT").map_or_else(
        || workspace().join("target/wasm32-wasip2/component/guest_auth.wasm"),
        PathBuf::from,
    );
    let python_component = workspace().join("target/python-policy/guest_python.wasm");
    let load_from = |component: &Path, key: SigningKey| {
        runtime
            .block_on(PolicyHandle::load(
                &PolicyConfig {
                    component: component.to_owned(),
                    cache_dir: Some(cache.path().to_owned()),
                    limits: SandboxLimits::default(),
                    trust: None,
                },
                PolicySettings {
                    signing_keys: vec![key],
                    issuer: "taskflow".into(),
                    audience: "taskflow-api".into(),
                    token_ttl: Duration::from_secs(1800),
                    leeway: Duration::from_secs(30),
                },
                Arc::new(OneUser(UserRecord {
                    username: "bench".into(),
                    password_hash: hash.clone(),
                    scopes: vec!["tasks:read".into()],
                })),
            ))
            .expect("load the policy component (run `just build` and `just python-policy` first)")
    };
    let load = |key: SigningKey| load_from(&rust_component, key);
    let load_python = |key: SigningKey| load_from(&python_component, key);
    let policy = load(SigningKey {
        kid: kid.clone(),
        algorithm: KeyAlgorithm::Hs256,
        secret: SECRET.to_vec(),
    });
    let native = Native::new(&kid, Algorithm::HS256, DecodingKey::from_secret(SECRET));
    // The same decision with an Ed25519 signing key.
    let seed = [7u8; 32];
    let ed_kid = "bench-eddsa".to_owned();
    let ed_policy = load(SigningKey {
        kid: ed_kid.clone(),
        algorithm: KeyAlgorithm::EdDsa,
        secret: seed.to_vec(),
    });
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    let ed_native = Native::new(
        &ed_kid,
        Algorithm::EdDSA,
        DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(public.as_bytes())).unwrap(),
    );

    let grant = runtime
        .block_on(policy.issue_token("bench".into(), PASSWORD.into(), None))
        .unwrap()
        .unwrap();
    let valid = format!("Bearer {}", grant.access_token);
    let bad = format!("Bearer {}", tamper(&grant.access_token));
    assert!(
        native.decide(&valid, "tasks:read"),
        "the native check must accept the component's token"
    );
    assert!(!native.decide(&bad, "tasks:read"));
    fn request(authorization: &str) -> AccessRequest<'_> {
        AccessRequest {
            authorization: Some(authorization),
            method: "GET",
            route: "/tasks",
            required_scopes: &["tasks:read"],
        }
    }
    let decide = |policy: &PolicyHandle, authorization: &str| {
        runtime
            .block_on(policy.decide_access(&request(authorization)))
            .unwrap()
            .is_ok()
    };
    assert!(decide(&policy, &valid));
    assert!(!decide(&policy, &bad));
    let ed_grant = runtime
        .block_on(ed_policy.issue_token("bench".into(), PASSWORD.into(), None))
        .unwrap()
        .unwrap();
    let ed_valid = format!("Bearer {}", ed_grant.access_token);
    assert!(ed_native.decide(&ed_valid, "tasks:read"));
    assert!(decide(&ed_policy, &ed_valid));

    // The Python policy, on the same keys and the same user.
    let py_policy = load_python(SigningKey {
        kid: kid.clone(),
        algorithm: KeyAlgorithm::Hs256,
        secret: SECRET.to_vec(),
    });
    let py_ed_policy = load_python(SigningKey {
        kid: ed_kid.clone(),
        algorithm: KeyAlgorithm::EdDsa,
        secret: seed.to_vec(),
    });
    let py_grant = runtime
        .block_on(py_policy.issue_token("bench".into(), PASSWORD.into(), None))
        .unwrap()
        .unwrap();
    assert!(native.decide(&format!("Bearer {}", py_grant.access_token), "tasks:read"));
    assert!(decide(&py_policy, &valid));
    assert!(!decide(&py_policy, &bad));
    assert!(decide(&py_ed_policy, &ed_valid));
    // TASKFLOW_BENCH_BASELINE names another build of the policy: the same
    // three decisions through it and through this one, timed in alternating
    // batches in this one process (see `interleaved`).
    if let Some(baseline) = std::env::var_os("TASKFLOW_BENCH_BASELINE") {
        let baseline = PathBuf::from(baseline);
        let base_policy = load_from(
            &baseline,
            SigningKey {
                kid: kid.clone(),
                algorithm: KeyAlgorithm::Hs256,
                secret: SECRET.to_vec(),
            },
        );
        let base_ed_policy = load_from(
            &baseline,
            SigningKey {
                kid: ed_kid.clone(),
                algorithm: KeyAlgorithm::EdDsa,
                secret: seed.to_vec(),
            },
        );
        let size_kib = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len()) / 1024;
        let mut table = format!(
            "### This build of the policy against another, interleaved\n\n\
             This build: `{}` ({} KiB). Baseline: `{}` ({} KiB). Medians of {ROUNDS} \
             alternating batches each; the ratio's quartiles are over the rounds.\n\n\
             | decision | native `jsonwebtoken` | baseline | this build | this / baseline (quartiles) | this / native |\n|---|---|---|---|---|---|\n",
            rust_component.display(),
            size_kib(&rust_component),
            baseline.display(),
            size_kib(&baseline),
        );
        let cases: [(&str, &Native, &PolicyHandle, &PolicyHandle, &str, bool); 3] = [
            ("valid HS256", &native, &policy, &base_policy, &valid, true),
            (
                "valid EdDSA",
                &ed_native,
                &ed_policy,
                &base_ed_policy,
                &ed_valid,
                true,
            ),
            ("bad signature", &native, &policy, &base_policy, &bad, false),
        ];
        for (label, native, this, base, token, accepted) in cases {
            let Interleaved {
                medians: [n, b, t],
                ratio_quartiles: [low, ratio, high],
            } = interleaved([
                &mut || assert_eq!(native.decide(black_box(token), "tasks:read"), accepted),
                &mut || assert_eq!(decide(base, black_box(token)), accepted),
                &mut || assert_eq!(decide(this, black_box(token)), accepted),
            ]);
            table.push_str(&format!(
                "| {label} | {:.2} µs | {:.2} µs | {:.2} µs | {ratio:.3} ({low:.3}–{high:.3}) | {:.2}× |\n",
                n / 1000.0,
                b / 1000.0,
                t / 1000.0,
                t / n,
            ));
        }
        common::report(&table);
    }
    let rust_kib = policy.instance_memory_bytes() / 1024;
    let python_kib = py_policy.instance_memory_bytes() / 1024;

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = c.benchmark_group("decide");
    group.bench_function("native-valid", |b| {
        b.iter(|| native.decide(black_box(&valid), "tasks:read"))
    });
    group.bench_function("component-valid", |b| {
        b.iter(|| decide(&policy, black_box(&valid)))
    });
    group.bench_function("native-valid-eddsa", |b| {
        b.iter(|| ed_native.decide(black_box(&ed_valid), "tasks:read"))
    });
    group.bench_function("component-valid-eddsa", |b| {
        b.iter(|| decide(&ed_policy, black_box(&ed_valid)))
    });
    group.bench_function("native-bad-signature", |b| {
        b.iter(|| native.decide(black_box(&bad), "tasks:read"))
    });
    group.bench_function("component-bad-signature", |b| {
        b.iter(|| decide(&policy, black_box(&bad)))
    });
    group.bench_function("python-valid", |b| {
        b.iter(|| decide(&py_policy, black_box(&valid)))
    });
    group.bench_function("python-valid-eddsa", |b| {
        b.iter(|| decide(&py_ed_policy, black_box(&ed_valid)))
    });
    group.bench_function("python-bad-signature", |b| {
        b.iter(|| decide(&py_policy, black_box(&bad)))
    });
    let (signed, signature) = ed_grant.access_token.rsplit_once('.').unwrap();
    let signature =
        ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    group.bench_function("native-ed25519-verify", |b| {
        b.iter(|| {
            public
                .verify_strict(black_box(signed.as_bytes()), &signature)
                .is_ok()
        })
    });
    group.finish();
    let mut group = c.benchmark_group("issue");
    group.bench_function("native-cheap-hash", |b| {
        b.iter(|| native.issue(black_box(&hash)))
    });
    group.bench_function("component-cheap-hash", |b| {
        b.iter(|| {
            runtime
                .block_on(policy.issue_token("bench".into(), PASSWORD.into(), None))
                .unwrap()
                .unwrap()
        })
    });
    group.bench_function("python-cheap-hash", |b| {
        b.iter(|| {
            runtime
                .block_on(py_policy.issue_token("bench".into(), PASSWORD.into(), None))
                .unwrap()
                .unwrap()
        })
    });
    group.finish();
    // Real password work (argon2id, policy-kit's parameters): natively as
    // the host's primitive computes it, inside the Rust component, and
    // through the Python policy, which asks the primitive.
    let mut group = c.benchmark_group("argon2id");
    group.sample_size(10);
    group.bench_function("native-hash", |b| {
        b.iter(|| {
            Argon2::default()
                .hash_password(black_box(PASSWORD.as_bytes()))
                .unwrap()
                .to_string()
        })
    });
    group.bench_function("component-hash", |b| {
        b.iter(|| {
            runtime
                .block_on(policy.hash_password(PASSWORD.into()))
                .unwrap()
        })
    });
    group.bench_function("python-hash", |b| {
        b.iter(|| {
            runtime
                .block_on(py_policy.hash_password(PASSWORD.into()))
                .unwrap()
        })
    });
    group.finish();
    c.final_summary();

    let rows = [
        ("Bearer decision, valid token", "decide", "valid"),
        (
            "Bearer decision, valid EdDSA token",
            "decide",
            "valid-eddsa",
        ),
        ("Bearer decision, bad signature", "decide", "bad-signature"),
        (
            "token issuance, cheap hash (fresh instance per call)",
            "issue",
            "cheap-hash",
        ),
    ];
    let mut table = String::from(
        "### Policy calls (criterion medians)\n\n| path | native `jsonwebtoken` | component | component / native |\n|---|---|---|---|\n",
    );
    for (label, group, case) in rows {
        let native = median_ns(group, &format!("native-{case}"));
        let component = median_ns(group, &format!("component-{case}"));
        table.push_str(&format!(
            "| {label} | {:.2} µs | {:.2} µs | {:.2}× |\n",
            native / 1000.0,
            component / 1000.0,
            component / native
        ));
    }
    let eddsa =
        median_ns("decide", "component-valid-eddsa") / median_ns("decide", "component-valid");
    table.push_str(&format!(
        "\nIn the component, a Bearer decision on an EdDSA token costs {eddsa:.1}× one on an HS256 token (Ed25519 verification against one HMAC).\n"
    ));
    table.push_str(&python_table(rust_kib, python_kib));
    common::report(&table);
}

/// The Python policy beside the Rust one, and the host's primitives called
/// natively against the same work asked for through the Rust component.
fn python_table(rust_kib: usize, python_kib: usize) -> String {
    let us = |group: &str, id: &str| median_ns(group, id) / 1000.0;
    let ms = |group: &str, id: &str| median_ns(group, id) / 1e6;
    let mut table = String::from(
        "\n### The Python policy beside the Rust one (criterion medians)\n\n| | Rust (`guest-auth`) | Python (`guest-python`) | Python / Rust |\n|---|---|---|---|\n",
    );
    let mut row = |label: &str, rust: f64, python: f64, unit: &str| {
        table.push_str(&format!(
            "| {label} | {rust:.1} {unit} | {python:.1} {unit} | {:.1}× |\n",
            python / rust
        ));
    };
    for (label, case) in [
        ("Bearer decision, valid HS256 token", "valid"),
        ("Bearer decision, valid EdDSA token", "valid-eddsa"),
        ("Bearer decision, bad signature", "bad-signature"),
    ] {
        row(
            label,
            us("decide", &format!("component-{case}")),
            us("decide", &format!("python-{case}")),
            "µs",
        );
    }
    row(
        "token issuance, cheap hash (a fresh instance per call)",
        us("issue", "component-cheap-hash"),
        us("issue", "python-cheap-hash"),
        "µs",
    );
    row(
        "hash-password, argon2id m=19456 t=2 p=1",
        ms("argon2id", "component-hash"),
        ms("argon2id", "python-hash"),
        "ms",
    );
    row(
        "memory of a fresh instance",
        rust_kib as f64 / 1024.0,
        python_kib as f64 / 1024.0,
        "MiB",
    );
    let ed_in_component = us("decide", "component-valid-eddsa") - us("decide", "component-valid");
    table.push_str(&format!(
        "\n### The host's primitives, through the Rust component and called natively\n\n| work | through the component | native | component / native |\n|---|---|---|---|\n| argon2id hash, policy-kit's parameters | {:.1} ms | {:.1} ms | {:.2}× |\n| Ed25519 in a decision (EdDSA decision less HS256 decision; public key and verification) | {ed_in_component:.1} µs | {:.1} µs (verification) | {:.2}× |\n",
        ms("argon2id", "component-hash"),
        ms("argon2id", "native-hash"),
        ms("argon2id", "component-hash") / ms("argon2id", "native-hash"),
        us("decide", "native-ed25519-verify"),
        ed_in_component / us("decide", "native-ed25519-verify"),
    ));
    table
}

/// Rounds of [`interleaved`].
const ROUNDS: usize = 200;

/// What [`interleaved`] measured.
struct Interleaved {
    /// Median ns per call of each of the three.
    medians: [f64; 3],
    /// The quartiles, over the rounds, of the third's time over the second's.
    ratio_quartiles: [f64; 3],
}

/// Times three ways of doing the same work in alternating batches of about
/// 2 ms, in a rotating order, so that whatever else the machine does falls
/// on each alike: back-to-back criterion runs on a shared machine drifted
/// by more than the differences looked for.
fn interleaved(mut work: [&mut dyn FnMut(); 3]) -> Interleaved {
    use std::time::Instant;
    let batch = |work: &mut dyn FnMut(), n: u32| {
        let start = Instant::now();
        for _ in 0..n {
            work();
        }
        start.elapsed().as_nanos() as f64 / f64::from(n)
    };
    // Warm up, and size each batch to about 2 ms.
    let sizes = work.each_mut().map(|w| {
        let once = batch(*w, 20).max(1.0);
        ((2e6 / once) as u32).clamp(1, 100_000)
    });
    let mut times = [const { Vec::new() }; 3];
    for round in 0..ROUNDS {
        for k in 0..3 {
            let i = (round + k) % 3;
            times[i].push(batch(work[i], sizes[i]));
        }
    }
    let quartile = |v: &mut Vec<f64>, q: usize| {
        v.sort_by(f64::total_cmp);
        v[v.len() * q / 4]
    };
    let mut ratios: Vec<f64> = times[2].iter().zip(&times[1]).map(|(t, b)| t / b).collect();
    Interleaved {
        medians: times.each_mut().map(|t| quartile(t, 2)),
        ratio_quartiles: [1, 2, 3].map(|q| quartile(&mut ratios, q)),
    }
}

fn tamper(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// Reads criterion's median estimate (ns) of one benchmark from its output.
fn median_ns(group: &str, id: &str) -> f64 {
    let home = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/criterion"));
    let path = home.join(group).join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let estimates: Value = serde_json::from_str(&text).unwrap();
    estimates["median"]["point_estimate"].as_f64().unwrap()
}
