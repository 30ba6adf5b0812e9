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
