# TaskFlow: `just run` serves, `just test` checks everything.

set shell := ["bash", "-euo", "pipefail", "-c"]

component := "target/wasm32-wasip2/component/guest_auth.wasm"

# Tests at once: most of an integration test is waiting on the server it
# drives (two at a time kept 2 cores 42% busy), so four at once halve the
# suite's time. RUST_TEST_THREADS set by the caller wins.
export RUST_TEST_THREADS := env_var_or_default("RUST_TEST_THREADS", "4")

# The one cargo selection the host is built and tested with on SQLite.
host-build := "cargo test --release --workspace --lib --bins --test api --test clients"

# List the recipes.
default:
    @just --list

# Add the WebAssembly target if this toolchain lacks it.
wasm-target:
    @rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

# Build the auth policy component (guest-auth, wasm32-wasip2).
component: wasm-target
    cargo build --profile component --target wasm32-wasip2 -p guest-auth

# Build the default policy and the second example policy.
components: component
    cargo build --profile component --target wasm32-wasip2 -p guest-admin-delete

# Build the Python policy (guest-python) with componentize-py, pinned, in a
# virtualenv under target/python-policy: target/python-policy/guest_python.wasm.
python-policy:
    scripts/python-policy

# Build the policies and the taskflow host. The host is built with the
# very selection `just test` builds it with (cargo unifies features per
# selection, and `-p taskflow` alone resolves them differently, which
# rebuilt the host for minutes), so `just run` after `just test` compiles
# nothing; on a fresh clone it compiles the test targets too.
build: components
    {{host-build}} --no-run

# Build the components the integration tests load: hostile, chatty, lax and foreign ones.
test-components: wasm-target
    cargo build --profile component --target wasm32-wasip2 -p hostile-policy -p chatty-policy -p lax-policy -p other-world

# Serve on 127.0.0.1:8080 with the embedded defaults (SQLite in ./taskflow-data).
run: build
    @echo "Add a user (password on stdin):"
    @echo "  echo 'their-password' | ./target/release/taskflow user add alice --scopes 'tasks:read tasks:write'"
    @echo "Get a token:"
    @echo "  curl -s http://127.0.0.1:8080/token -d grant_type=password --data-urlencode username=alice --data-urlencode password=their-password"
    @echo "Call a protected route:"
    @echo "  curl -s -H \"Authorization: Bearer \$TOKEN\" http://127.0.0.1:8080/tasks"
    @echo
    ./target/release/taskflow serve

# Formatting and clippy (-D warnings) for the host, and the guest natively and as wasm.
lint: wasm-target
    cargo fmt --all --check
    cargo clippy --release --workspace --all-targets -- -D warnings
    cargo clippy --profile component --target wasm32-wasip2 -p policy-kit -p guest-auth -p guest-admin-delete -p hostile-policy -p chatty-policy -p lax-policy -p other-world -- -D warnings

# Lint, build the components, then unit tests of both sides and the
# integration tests (last): on SQLite, as real clients (Chromium on /docs,
# schemathesis), and on a throwaway PostgreSQL server. The tests build the
# host themselves, and every run selects the same targets (`--workspace
# --lib --bins` and test binaries): cargo unifies features per selection,
# so this is one build of wasmtime, not one per run.
test: lint components test-components python-policy test-tools
    {{host-build}}
    just test-postgres

# What the `clients` tests drive: Debian's chromium, chromium-driver and curl, and
# schemathesis and openapi-spec-validator from PyPI (in target/test-tools).
test-tools:
    scripts/test-tools

# The integration tests on PostgreSQL: installs it from Debian's packages if
# missing, runs a throwaway server on loopback, stops it afterwards.
test-postgres: components test-components python-policy
    scripts/with-postgres cargo test --release --workspace --lib --bins --test api --test replicas

# Benchmarks: policy calls vs native code (criterion), the server under wrk,
# start-up and swap times, hostile neighbours, the FastAPI peer (a virtualenv
# under target/bench-peer), propagation between two replicas and fleet
# rollout (`auth deploy` to both replicas serving) on a throwaway PostgreSQL
# server, and a shadowing candidate's cost. Writes docs/benchmarks.md.
# TASKFLOW_BENCH_ONLY=hostile|peer|propagation|rollout|shadow runs one section
# of the server benchmark alone.
bench: build test-components
    @command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
    rm -f target/bench-report.md
    CRITERION_HOME="$PWD/target/criterion" TASKFLOW_BENCH_REPORT="$PWD/target/bench-report.md" \
        cargo bench -p taskflow --bench policy -- --noplot
    TASKFLOW_BENCH_REPORT="$PWD/target/bench-report.md" TASKFLOW_BENCH_PEER="$(scripts/bench-peer)" \
        scripts/with-postgres cargo bench -p taskflow --features bench-control --bench server
    @mkdir -p docs
    @{ cat docs/benchmarks-intro.md; \
       echo; echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(uname -m)), $(rustc --version)."; \
       echo; cat target/bench-report.md; } > docs/benchmarks.md
    @echo "wrote docs/benchmarks.md"

# Fuzz the Bearer decision and the /token form parser for a bounded time
# each, and record how many inputs each ran in docs/fuzzing.md.
fuzz seconds="60":
    @command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    scripts/fuzz {{seconds}}
