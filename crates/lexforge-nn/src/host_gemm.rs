//! A bounds-checked matrix product on host slices, for kernels that own their buffers (the
//! whole-sequence LSTM): the `gemm` crate that burn's flex backend uses for its own matmul,
//! called without allocating an output and with accumulation into it.

use burn::backend::flex::FlexTensor;
use burn::tensor::DType;
use gemm::Parallelism;
use lexforge_core::host::host;

/// A read-only matrix view into a slice: element `(i, j)` is `data[i * row_stride + j *
/// col_stride]`. A transposed view of a row-major `[cols, rows]` buffer is
/// [`Mat::transposed`].
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// The row-major `[rows, cols]` matrix at the start of `data`.
    pub(crate) fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The `[rows, cols]` matrix at the start of `data` whose rows are `row_stride` apart (a
    /// block of columns of a wider row-major matrix).
    pub(crate) fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of the row-major `[cols, rows]` matrix at the start of `data`, as a
    /// `[rows, cols]` view.
    pub(crate) fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    /// The same elements with explicit strides: `(i, j)` at `i * row_stride + j * col_stride`.
    pub(crate) fn with_strides(self, row_stride: usize, col_stride: usize) -> Self {
        Mat {
            row_stride,
            col_stride,
            ..self
        }
    }

    /// The transposed view (no copy).
    pub(crate) fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element of the view lies inside `data`.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < self.data.len()
    }
}

/// A 2-D flex tensor as a matrix view of its own buffer when its strides are non-negative
/// (contiguous or a transposed view), else of a contiguous copy.
pub(crate) fn with_mat<R>(x: &FlexTensor, f: impl FnOnce(Mat<'_>) -> R) -> R {
    let (shape, strides) = (x.layout().shape(), x.layout().strides());
    let (rows, cols) = (shape[0], shape[1]);
    match (usize::try_from(strides[0]), usize::try_from(strides[1])) {
        (Ok(rs), Ok(cs)) if x.dtype() == DType::F32 => {
            let data = &x.storage::<f32>()[x.layout().start_offset()..];
            f(Mat::rows(data, rows, cols).with_strides(rs, cs))
        }
        _ => f(Mat::rows(&host(x), rows, cols)),
    }
}

/// Work (multiply-adds) below which a product runs on one thread: splitting it costs more than
/// it saves (the same threshold as flex's matmul).
const PARALLEL_WORK: usize = 192 * 192 * 192;

/// Where a product runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// On the rayon pool when large.
    Pool,
    /// On the calling thread (the caller already splits the work across threads).
    One,
}

/// `out = a b` (or `out += a b` when `accumulate`) for `a` `[m, k]`, `b` `[k, n]` and the
/// row-major `out` `[m, n]` at the start of the slice.
///
/// # Panics
/// When the shapes disagree or a view reaches past its slice (a caller bug, never user input).
pub(crate) fn matmul_into(
    out: &mut [f32],
    a: Mat<'_>,
    b: Mat<'_>,
    accumulate: bool,
    threads: Threads,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions of the product differ");
    assert!(out.len() >= m * n, "output slice shorter than [m, n]");
    assert!(a.in_bounds() && b.in_bounds(), "matrix view out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        return;
    }
    let parallelism = if threads == Threads::Pool && m * n * k >= PARALLEL_WORK {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // Strides fit in `isize`: each is at most a slice length.
    let stride = |s: usize| s as isize;
    #[allow(unsafe_code)]
    // SAFETY: `out` holds `m * n` elements written at `i * n + j`; every element read through
    // `a` and `b` lies inside its slice (`in_bounds`, checked above); the slices outlive the
    // call and `out` cannot alias them (it is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            stride(n),
            accumulate,
            a.data.as_ptr(),
            stride(a.col_stride),
            stride(a.row_stride),
            b.data.as_ptr(),
            stride(b.col_stride),
            stride(b.row_stride),
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Rows of `a` per tile of [`matmul_narrow`]: one accumulator register each.
const TILE_ROWS: usize = 16;
/// Columns of the output per tile (one AVX-512 register of f32).
const TILE_COLS: usize = 16;

/// `out = a b` (or `out += a b`) for a narrow row-major `b` `[k, n]` (a few columns: the
/// batch of a recurrent step) and `a` `[m, k]` with unit column stride, on the calling thread.
///
/// The `gemm` crate packs its operands on every call, which for a step's product (a `[4n, H]`
/// weight block times `[H, batch]`) copies the weight block each time. On CPUs with AVX-512,
/// here `a` is read in place: a tile of [`TILE_ROWS`] rows of `a` times [`TILE_COLS`] columns
/// of `b` keeps its accumulators in registers, broadcasting one element of `a` per row and
/// loading one vector of `b` per step along `k` (`lm-bench`'s shapes: 100-110 GFLOP/s per
/// thread against the `gemm` crate's 89-95). Columns past the last full vector and rows past
/// the last full tile, and CPUs without AVX-512, go through [`matmul_into`].
///
/// # Panics
/// When the shapes disagree or a view reaches past its slice (caller bugs).
pub(crate) fn matmul_narrow(out: &mut [f32], a: Mat<'_>, b: &[f32], n: usize, accumulate: bool) {
    let (m, k) = (a.rows, a.cols);
    assert!(a.in_bounds(), "matrix view out of bounds");
    assert!(b.len() >= k * n, "b shorter than [k, n]");
    assert!(out.len() >= m * n, "output slice shorter than [m, n]");
    let full_rows = m / TILE_ROWS * TILE_ROWS;
    let full_cols = n / TILE_COLS * TILE_COLS;
    let tiled = avx512() && a.col_stride == 1 && k > 0 && full_rows > 0 && full_cols > 0;
    if !tiled {
        matmul_into(out, a, Mat::rows(b, k, n), accumulate, Threads::One);
        return;
    }
    if !accumulate {
        out[..m * n].fill(0.0);
    }
    #[allow(unsafe_code)]
    // SAFETY: the CPU has AVX-512F (checked by `avx512`). The tiles read rows `0..full_rows`
    // of `a` (elements `i * row_stride + p`, `p < k`: inside `a.data` by `in_bounds`), columns
    // `0..full_cols` of `b` (inside its `k * n` elements) and write the same columns of rows
    // `0..full_rows` of `out` (inside its `m * n` elements); `out` is borrowed mutably, so it
    // aliases neither input.
    unsafe {
        narrow_tiles_avx512(
            out.as_mut_ptr(),
            a.data.as_ptr(),
            a.row_stride,
            full_rows,
            k,
            b.as_ptr(),
            n,
            full_cols,
        );
    }
    // The rest: columns past the full vectors of the tiled rows, then the remaining rows.
    for i in 0..m {
        let from = if i < full_rows { full_cols } else { 0 };
        if from == n {
            continue;
        }
        let a_row = &a.data[i * a.row_stride..i * a.row_stride + k];
        let o = &mut out[i * n..(i + 1) * n];
        for (p, &av) in a_row.iter().enumerate() {
            let b_row = &b[p * n..(p + 1) * n];
            for c in from..n {
                o[c] += av * b_row[c];
            }
        }
    }
}

/// Whether this CPU runs the AVX-512 tiles of [`matmul_narrow`] (checked once).
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The register tiles of [`matmul_narrow`]: `out[i, c] += Σ_p a[i * rs + p] b[p * n + c]`
/// for `i < rows` (a multiple of [`TILE_ROWS`]) and `c < cols` (a multiple of [`TILE_COLS`]).
///
/// # Safety
/// The CPU supports AVX-512F; every element named above lies inside its allocation.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn narrow_tiles_avx512(
    out: *mut f32,
    a: *const f32,
    rs: usize,
    rows: usize,
    k: usize,
    b: *const f32,
    n: usize,
    cols: usize,
) {
    use std::arch::x86_64::__m512;
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_storeu_ps};
    for i0 in (0..rows).step_by(TILE_ROWS) {
        for c0 in (0..cols).step_by(TILE_COLS) {
            // SAFETY (every pointer below): inside the ranges the caller guarantees. Offsets
            // advance by pointer steps (no index arithmetic that could overflow), and `a` is
            // read unaligned (no alignment assumption).
            unsafe {
                let o = out.add(i0 * n + c0);
                let mut acc: [__m512; TILE_ROWS] =
                    std::array::from_fn(|r| _mm512_loadu_ps(o.wrapping_add(r * n)));
                let mut a_p: [*const f32; TILE_ROWS] =
                    std::array::from_fn(|r| a.wrapping_add((i0 + r) * rs));
                let mut b_p = b.add(c0);
                for _ in 0..k {
                    let bv = _mm512_loadu_ps(b_p);
                    for r in 0..TILE_ROWS {
                        let av = _mm512_set1_ps(a_p[r].read_unaligned());
                        acc[r] = _mm512_fmadd_ps(av, bv, acc[r]);
                        a_p[r] = a_p[r].wrapping_add(1);
                    }
                    b_p = b_p.wrapping_add(n);
                }
                for (r, acc) in acc.iter().enumerate() {
                    _mm512_storeu_ps(o.wrapping_add(r * n), *acc);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(unsafe_code, clippy::too_many_arguments)]
unsafe fn narrow_tiles_avx512(
    _: *mut f32,
    _: *const f32,
    _: usize,
    _: usize,
    _: usize,
    _: *const f32,
    _: usize,
    _: usize,
) {
    unreachable!("avx512() is false off x86_64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: Mat<'_>, b: Mat<'_>) -> Vec<f32> {
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols)
                    .map(|p| {
                        a.data[i * a.row_stride + p * a.col_stride]
                            * b.data[p * b.row_stride + j * b.col_stride]
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn products_of_plain_and_transposed_views_match_the_definition_and_accumulate() {
        let a: Vec<f32> = (0..3 * 4).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..4 * 5).map(|i| (i as f32 * 0.11).cos()).collect();
        for (av, bv) in [
            (Mat::rows(&a, 3, 4), Mat::rows(&b, 4, 5)),
            (Mat::transposed(&a, 3, 4), Mat::transposed(&b, 4, 5)),
        ] {
            let want = naive(av, bv);
            let mut out = vec![7.0; 15];
            matmul_into(&mut out, av, bv, false, Threads::Pool);
            for (x, y) in out.iter().zip(&want) {
                assert!((x - y).abs() < 1e-5, "{x} vs {y}");
            }
            matmul_into(&mut out, av, bv, true, Threads::One);
            for (x, y) in out.iter().zip(&want) {
                assert!((x - 2.0 * y).abs() < 1e-5, "{x} vs {}", 2.0 * y);
            }
        }
    }

    #[test]
    fn narrow_products_match_the_definition_for_every_remainder() {
        for (m, k, n) in [
            (37, 13, 35),
            (16, 5, 16),
            (3, 7, 2),
            (16, 1, 17),
            (40, 9, 48),
        ] {
            let a: Vec<f32> = (0..m * (k + 3)).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            let av = Mat::strided(&a, m, k, k + 3);
            let want = naive(av, Mat::rows(&b, k, n));
            let mut out = vec![7.0; m * n];
            matmul_narrow(&mut out, av, &b, n, false);
            for (x, y) in out.iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y} at {m}x{k}x{n}");
            }
            matmul_narrow(&mut out, av, &b, n, true);
            for (x, y) in out.iter().zip(&want) {
                assert!(
                    (x - 2.0 * y).abs() < 1e-4,
                    "{x} vs {} at {m}x{k}x{n}",
                    2.0 * y
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn a_view_past_its_slice_is_refused() {
        let a = vec![0.0; 5];
        let mut out = vec![0.0; 4];
        matmul_into(
            &mut out,
            Mat::rows(&a, 2, 3),
            Mat::rows(&a, 3, 2),
            false,
            Threads::Pool,
        );
    }
}
