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

/// Rows per tile of [`PackedRows`]: one accumulator register each.
const TILE_ROWS: usize = 16;
/// Columns of the output per tile (one AVX-512 register of f32).
const TILE_COLS: usize = 16;

/// A `[rows, k]` matrix for repeated narrow products ([`PackedRows::matmul_into`]): on CPUs
/// with AVX-512 its rows are packed in tiles of [`TILE_ROWS`], element `(i, p)` at
/// `((i / TILE_ROWS) * k + p) * TILE_ROWS + i % TILE_ROWS` (rows past `rows` are zero), so
/// that a tile reads one contiguous cache line per step along `k`; elsewhere it is kept
/// row-major for the `gemm` crate.
#[derive(Debug, Clone)]
pub(crate) struct PackedRows {
    data: Vec<f32>,
    rows: usize,
    k: usize,
    tiled: bool,
}

impl PackedRows {
    /// Packs `a` (any view).
    pub(crate) fn pack(a: Mat<'_>) -> Self {
        assert!(a.in_bounds(), "matrix view out of bounds");
        let (rows, k) = (a.rows, a.cols);
        let at = |i: usize, p: usize| a.data[i * a.row_stride + p * a.col_stride];
        let tiled = avx512();
        let data = if tiled {
            let tiles = rows.div_ceil(TILE_ROWS);
            let mut data = vec![0.0f32; tiles * k * TILE_ROWS];
            for (t, tile) in data.chunks_exact_mut((k * TILE_ROWS).max(1)).enumerate() {
                let valid = TILE_ROWS.min(rows - t * TILE_ROWS);
                for (p, col) in tile.chunks_exact_mut(TILE_ROWS).enumerate() {
                    for (r, v) in col.iter_mut().enumerate().take(valid) {
                        *v = at(t * TILE_ROWS + r, p);
                    }
                }
            }
            data
        } else {
            (0..rows)
                .flat_map(|i| (0..k).map(move |p| (i, p)))
                .map(|(i, p)| at(i, p))
                .collect()
        };
        PackedRows {
            data,
            rows,
            k,
            tiled,
        }
    }

    /// `out = A[:, cols] b` (or `out +=`) for the row-major `b` `[cols.len(), n]` and
    /// `out` `[rows, n]`, on the calling thread.
    ///
    /// # Panics
    /// When `cols` reaches past `k` or a slice is too short (caller bugs).
    pub(crate) fn matmul_into(
        &self,
        out: &mut [f32],
        cols: std::ops::Range<usize>,
        b: &[f32],
        n: usize,
        accumulate: bool,
    ) {
        let (m, kk) = (self.rows, cols.len());
        assert!(cols.end <= self.k, "columns past the packed matrix");
        assert!(b.len() >= kk * n, "b shorter than [k, n]");
        assert!(out.len() >= m * n, "output slice shorter than [m, n]");
        if !self.tiled {
            let a = Mat::strided(&self.data[cols.start..], m, kk, self.k);
            matmul_into(out, a, Mat::rows(b, kk, n), accumulate, Threads::One);
            return;
        }
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        if m == 0 || n == 0 || kk == 0 {
            return;
        }
        let full_cols = n / TILE_COLS * TILE_COLS;
        let tiles = m.div_ceil(TILE_ROWS);
        for t in 0..tiles {
            let valid = TILE_ROWS.min(m - t * TILE_ROWS);
            let panel = &self.data[(t * self.k + cols.start) * TILE_ROWS..][..kk * TILE_ROWS];
            for c0 in (0..full_cols).step_by(TILE_COLS) {
                let mut acc = [[0.0f32; TILE_COLS]; TILE_ROWS];
                for (r, acc) in acc.iter_mut().enumerate().take(valid) {
                    acc.copy_from_slice(&out[(t * TILE_ROWS + r) * n + c0..][..TILE_COLS]);
                }
                #[allow(unsafe_code)]
                // SAFETY: the CPU has AVX-512F (`tiled` is set only then); the panel holds
                // `kk * TILE_ROWS` elements and `b` at least `kk * n`, with `c0 + TILE_COLS
                // <= n` (checked above and by the slicing); `acc` is a local array.
                unsafe {
                    panel_tile_avx512(&mut acc, panel.as_ptr(), kk, b.as_ptr().add(c0), n);
                }
                for (r, acc) in acc.iter().enumerate().take(valid) {
                    out[(t * TILE_ROWS + r) * n + c0..][..TILE_COLS].copy_from_slice(acc);
                }
            }
            if full_cols < n {
                for (p, col) in panel.chunks_exact(TILE_ROWS).enumerate() {
                    let b_row = &b[p * n..(p + 1) * n];
                    for (r, &av) in col.iter().enumerate().take(valid) {
                        let o = &mut out[(t * TILE_ROWS + r) * n..][..n];
                        for c in full_cols..n {
                            o[c] += av * b_row[c];
                        }
                    }
                }
            }
        }
    }
}

/// One register tile of [`PackedRows::matmul_into`]: `acc[r][c] += Σ_p panel[p * TILE_ROWS +
/// r] b[p * n + c]` for `c < TILE_COLS`.
///
/// # Safety
/// The CPU supports AVX-512F; `panel` holds `k * TILE_ROWS` elements and `b` reaches
/// `(k - 1) * n + TILE_COLS` elements.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn panel_tile_avx512(
    acc: &mut [[f32; TILE_COLS]; TILE_ROWS],
    panel: *const f32,
    k: usize,
    b: *const f32,
    n: usize,
) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_storeu_ps,
    };
    // SAFETY (every pointer below): inside the ranges the caller guarantees; offsets advance
    // by pointer steps and the panel is read unaligned.
    unsafe {
        let mut regs: [__m512; TILE_ROWS] =
            std::array::from_fn(|r| _mm512_loadu_ps(acc[r].as_ptr()));
        let (mut a, mut bp) = (panel, b);
        for _ in 0..k {
            let bv = _mm512_loadu_ps(bp);
            for (r, reg) in regs.iter_mut().enumerate() {
                *reg =
                    _mm512_fmadd_ps(_mm512_set1_ps(a.wrapping_add(r).read_unaligned()), bv, *reg);
            }
            a = a.wrapping_add(TILE_ROWS);
            bp = bp.wrapping_add(n);
        }
        for (r, reg) in regs.iter().enumerate() {
            _mm512_storeu_ps(acc[r].as_mut_ptr(), *reg);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(unsafe_code)]
unsafe fn panel_tile_avx512(
    _: &mut [[f32; TILE_COLS]; TILE_ROWS],
    _: *const f32,
    _: usize,
    _: *const f32,
    _: usize,
) {
    unreachable!("avx512() is false off x86_64")
}

/// Whether this CPU runs the AVX-512 tiles of [`PackedRows`] (checked once).
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
    fn packed_products_match_the_definition_for_column_ranges_and_remainders() {
        for (m, k, n) in [(37, 13, 35), (16, 5, 16), (3, 7, 2), (40, 9, 48)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            let packed = PackedRows::pack(Mat::rows(&a, m, k));
            for cols in [0..k, 2..k.min(6)] {
                let av = Mat::strided(&a[cols.start..], m, cols.len(), k);
                let want = naive(av, Mat::rows(&b, cols.len(), n));
                let mut out = vec![7.0; m * n];
                packed.matmul_into(&mut out, cols.clone(), &b, n, false);
                for (x, y) in out.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-4, "{x} vs {y} at {m}x{k}x{n}");
                }
                packed.matmul_into(&mut out, cols.clone(), &b, n, true);
                for (x, y) in out.iter().zip(&want) {
                    assert!(
                        (x - 2.0 * y).abs() < 1e-4,
                        "{x} vs {} at {m}x{k}x{n}",
                        2.0 * y
                    );
                }
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
