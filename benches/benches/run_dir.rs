//! Run-directory verification throughput (sha256 of every artifact), the cost every loader
//! pays before trusting a directory. `benches/compare_core.py` runs the same work in Python
//! (hashlib) for the side-by-side ratio.

#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(
    clippy::expect_used,
    reason = "a bench that cannot set up should stop loudly"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn verify(c: &mut Criterion) {
    let root = tempfile::tempdir().expect("temp dir");
    let (files, each) = (8, 4 << 20);
    let dir =
        lexforge_benches::make_run_dir(root.path(), "bench", files, each).expect("bench run dir");
    let mut g = c.benchmark_group("run_dir");
    g.throughput(Throughput::Bytes((files * each) as u64));
    g.sample_size(20);
    g.bench_function("verify_32MiB", |b| {
        b.iter(|| lexforge::verify_run_dir(&dir).expect("verifies"))
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
