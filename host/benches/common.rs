//! Shared by the benchmarks: where results go.

use std::io::Write;

/// Appends a section of Markdown to the report file `just bench` assembles
/// (`TASKFLOW_BENCH_REPORT`), and prints it.
pub fn report(markdown: &str) {
    println!("{markdown}");
    if let Some(path) = std::env::var_os("TASKFLOW_BENCH_REPORT") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open the benchmark report");
        writeln!(file, "{markdown}").expect("write the benchmark report");
    }
}
