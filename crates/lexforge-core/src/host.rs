//! Host access to the f32 buffers of burn's flex (CPU) tensors, for the kernels that the
//! library crates write as flex backend extensions (fused attention, layer norm, LSTM, AdamW).
//!
//! An operation that receives a tensor by value may overwrite it when no other tensor shares
//! its buffer ([`writable`]); otherwise it works on a copy, so results never depend on who
//! else holds the input.

use std::borrow::Cow;

use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;
use rayon::prelude::*;

/// A flex tensor's f32 values, borrowed when contiguous.
pub fn host(x: &FlexTensor) -> Cow<'_, [f32]> {
    match x.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(x.to_contiguous().storage::<f32>().to_vec()),
    }
}

/// Elements per rayon task of the buffer helpers below (smaller copies stay on one thread).
const MIN_TASK_ELEMENTS: usize = 1 << 16;

/// A copy of `src`, made in parallel for large slices.
pub fn par_copy(src: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(src.len());
    out.par_extend(src.par_iter().copied().with_min_len(MIN_TASK_ELEMENTS));
    out
}

/// `values *= factor`, in parallel for large buffers.
pub fn par_scale(values: &mut [f32], factor: f32) {
    values
        .par_chunks_mut(MIN_TASK_ELEMENTS)
        .for_each(|c| c.iter_mut().for_each(|v| *v *= factor));
}

/// `n` zeros, written in parallel for large buffers.
pub fn par_zeros(n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    out.par_extend(rayon::iter::repeat_n(0.0f32, n).with_min_len(MIN_TASK_ELEMENTS));
    out
}

/// `x` as a contiguous f32 tensor an operation may overwrite: `x` itself when no other tensor
/// shares its buffer and it is laid out from the buffer's start, else a parallel copy.
pub fn writable(mut x: FlexTensor) -> FlexTensor {
    let n = x.layout().shape().num_elements();
    let own = x.layout().is_contiguous()
        && x.layout().start_offset() == 0
        && x.try_storage_mut::<f32>().is_some_and(|s| s.len() == n);
    if own {
        x
    } else {
        flex_tensor(par_copy(&host(&x)), x.layout().shape())
    }
}

/// The values of a [`writable`] tensor (never copies: it owns its buffer alone).
pub fn values_mut(x: &mut FlexTensor) -> &mut [f32] {
    x.storage_mut::<f32>()
}

/// A contiguous flex tensor owning `values` (no copy).
pub fn flex_tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}
