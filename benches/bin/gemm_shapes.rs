//! The matrix products of the language-model benches through the `gemm` crate (what burn's
//! flex backend and lexforge's kernels call), for the BLAS comparison of docs/benchmarks.md:
//! `benches/gemm/sgemm_blas.c` runs the same shapes in the same order through a system BLAS.
//!
//! `RAYON_NUM_THREADS=2 cargo run -p lexforge-benches --bin gemm-shapes`. Each line: the median
//! of 15 calls; the per-head attention product is 48 single-threaded calls in a row (lexforge's
//! attention runs the heads in parallel, one product per task).

use std::time::Instant;

/// Name, `m`, `k`, `n`, whether `A` is stored transposed, whether `B` is.
const SHAPES: &[(&str, usize, usize, usize, bool, bool)] = &[
    (
        "c_attn x@W [2048,384]x[384,1152]",
        2048,
        384,
        1152,
        false,
        false,
    ),
    (
        "c_fc x@W [2048,384]x[384,1536]",
        2048,
        384,
        1536,
        false,
        false,
    ),
    (
        "mlp proj [2048,1536]x[1536,384]",
        2048,
        1536,
        384,
        false,
        false,
    ),
    (
        "head x@wte^T [2048,384]x[384,8000]",
        2048,
        384,
        8000,
        false,
        true,
    ),
    (
        "head dW x^T@dy [384,2048]x[2048,8000]",
        384,
        2048,
        8000,
        true,
        false,
    ),
    (
        "c_fc dx dy@W^T [2048,1536]x[1536,384]",
        2048,
        1536,
        384,
        false,
        true,
    ),
    (
        "q@k^T per head [256,64]x[64,256] x48",
        256,
        64,
        256,
        false,
        true,
    ),
    (
        "lstm input side [2048,512]x[512,2048]",
        2048,
        512,
        2048,
        false,
        false,
    ),
    ("lstm step [16,512]x[512,2048]", 16, 512, 2048, false, false),
];

fn main() {
    println!("threads {}", rayon::current_num_threads());
    for &(name, m, k, n, ta, tb) in SHAPES {
        let a: Vec<f32> = (0..m * k).map(|j| (j % 13) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|j| (j % 7) as f32 * 0.01).collect();
        let mut c = vec![0.0f32; m * n];
        // A `[m, k]` row-major, or stored as `[k, m]`; the same for B `[k, n]`.
        let (a_cs, a_rs) = if ta { (m as isize, 1) } else { (1, k as isize) };
        let (b_cs, b_rs) = if tb { (k as isize, 1) } else { (1, n as isize) };
        let per_head = name.starts_with("q@k^T");
        let (reps, par) = if per_head {
            (48, gemm::Parallelism::None)
        } else {
            (1, gemm::Parallelism::Rayon(0))
        };
        let mut times: Vec<f64> = (0..15)
            .map(|_| {
                let t0 = Instant::now();
                for _ in 0..reps {
                    #[allow(unsafe_code)]
                    // SAFETY: `c` holds `m * n` elements written at `i * n + j`; `a` and `b`
                    // hold `m * k` and `k * n` elements read through the strides above; none
                    // alias.
                    unsafe {
                        gemm::gemm(
                            m,
                            n,
                            k,
                            c.as_mut_ptr(),
                            1,
                            n as isize,
                            false,
                            a.as_ptr(),
                            a_cs,
                            a_rs,
                            b.as_ptr(),
                            b_cs,
                            b_rs,
                            0.0f32,
                            1.0f32,
                            false,
                            false,
                            false,
                            par,
                        );
                    }
                }
                t0.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[7];
        println!(
            "{name:<42} {:8.3} ms {:7.1} GFLOP/s",
            median * 1e3,
            2.0 * (m * k * n * reps) as f64 / median / 1e9
        );
        std::hint::black_box(&c);
    }
}
