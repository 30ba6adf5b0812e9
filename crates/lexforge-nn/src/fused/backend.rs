//! The fused kernels as a burn backend extension: [`FusedBackend`] on flex (in place on the
//! tensors' own buffers) and on flex under autodiff (recording each family's backward node).

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use lexforge_core::host::{flex_tensor, values_mut, writable};

use super::cross_entropy::{CrossEntropyBackward, cross_entropy_in_place};
use super::gelu::{GeluBackward, gelu_in_place};
use super::softmax::{OwnedMask, SoftmaxBackward, softmax_dims, softmax_host};

/// The fused kernels as backend operations (flex, and flex under autodiff). Inputs are f32.
#[backend_extension(Flex, Autodiff)]
pub trait FusedBackend: Backend {
    /// GELU of every element: exact (`x Φ(x)`) or the tanh form (`gelu_new`).
    fn fused_gelu(x: FloatTensor<Self>, exact: bool) -> FloatTensor<Self>;

    /// `softmax(scale * scores)` over the last axis of `[batch, heads, queries, keys]`, hidden
    /// keys exactly 0.
    fn fused_softmax(scores: FloatTensor<Self>, scale: f32, mask: OwnedMask) -> FloatTensor<Self>;

    /// Mean cross-entropy `[1]` of `logits` `[rows, vocab]` against `targets` (one valid id
    /// per row, checked by the caller).
    fn fused_cross_entropy(logits: FloatTensor<Self>, targets: Vec<usize>) -> FloatTensor<Self>;
}

impl FusedBackend for Flex {
    fn fused_gelu(x: FlexTensor, exact: bool) -> FlexTensor {
        let mut y = writable(x);
        gelu_in_place(values_mut(&mut y), exact, false);
        y
    }

    fn fused_softmax(scores: FlexTensor, scale: f32, mask: OwnedMask) -> FlexTensor {
        let dims = softmax_dims(&scores);
        let mut y = writable(scores);
        softmax_host(values_mut(&mut y), dims, scale, mask.borrowed());
        y
    }

    fn fused_cross_entropy(logits: FlexTensor, targets: Vec<usize>) -> FlexTensor {
        cross_entropy_in_place(&mut writable(logits), &targets, false)
    }
}

impl<C: CheckpointStrategy> FusedBackend for Autodiff<Flex, C> {
    fn fused_gelu(x: FloatTensor<Self>, exact: bool) -> FloatTensor<Self> {
        let prep = GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = x.into_primitive();
        match prep {
            OpsKind::Tracked(prep) => {
                let mut y = writable(x);
                let g = gelu_in_place(values_mut(&mut y), exact, true);
                let g = flex_tensor(g, y.layout().shape());
                prep.finish(g, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(<Flex as FusedBackend>::fused_gelu(x, exact)),
        }
    }

    fn fused_softmax(scores: FloatTensor<Self>, scale: f32, mask: OwnedMask) -> FloatTensor<Self> {
        let prep = SoftmaxBackward
            .prepare::<C>([scores.node()])
            .compute_bound()
            .stateful();
        let y = <Flex as FusedBackend>::fused_softmax(scores.into_primitive(), scale, mask);
        match prep {
            OpsKind::Tracked(prep) => prep.finish((y.clone(), scale), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_cross_entropy(logits: FloatTensor<Self>, targets: Vec<usize>) -> FloatTensor<Self> {
        let prep = CrossEntropyBackward
            .prepare::<C>([logits.node()])
            .compute_bound()
            .stateful();
        let logits = logits.into_primitive();
        match prep {
            OpsKind::Tracked(prep) => {
                let mut g = writable(logits);
                let loss = cross_entropy_in_place(&mut g, &targets, true);
                prep.finish(g, loss)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(<Flex as FusedBackend>::fused_cross_entropy(logits, targets))
            }
        }
    }
}
