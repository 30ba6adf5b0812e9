//! GELU in both forms — `gelu_new` (the tanh approximation GPT-2 was trained with) and the
//! exact `gelu` (erf, BERT) — with their closed-form derivatives and the backward node.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::{Dispatch, Flex};
use burn::tensor::Tensor;
use lexforge_core::host::{host, values_mut, writable};

use super::{Elementwise, FusedBackend, exp_neg, map_host, mul_in_place, on_host, sigmoid};

const GELU_C: f32 = 0.797_884_6; // sqrt(2 / pi)
const GELU_A: f32 = 0.044_715;

/// `gelu_new` and its derivative: `0.5 x (1 + tanh(u))` = `x sigmoid(2u)`,
/// `u = c (x + a x^3)`.
struct GeluTanh;

impl Elementwise for GeluTanh {
    #[inline(always)]
    fn apply(x: f32) -> (f32, f32) {
        const K: f32 = 2.0 * GELU_C;
        let s = sigmoid(K * (x + GELU_A * x * x * x));
        (
            x * s,
            s + x * s * (1.0 - s) * K * (1.0 + 3.0 * GELU_A * x * x),
        )
    }
}

/// Host GELU in place: `x` becomes `y`; returns `dy/dx` when asked (else empty).
fn gelu_host(x: &mut [f32], want_grad: bool) -> Vec<f32> {
    map_host::<GeluTanh>(x, want_grad)
}

/// The plain burn formula of `gelu_new` (other devices and precisions).
fn gelu_reference<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let c2 = 2.0 * (2.0 / std::f64::consts::PI).sqrt();
    let cube = x.clone() * x.clone() * x.clone();
    let u2 = (x.clone() + cube * f64::from(GELU_A)) * c2;
    x * burn::tensor::activation::sigmoid(u2)
}

/// `gelu_new`, the tanh approximation of GELU GPT-2 was trained with:
/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, elementwise, any shape.
pub fn gelu_new<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_host(&x) {
        return gelu_reference(x);
    }
    Tensor::from_dispatch(<Dispatch as FusedBackend>::fused_gelu(
        x.into_dispatch(),
        false,
    ))
}

/// `erf(x)` (Abramowitz & Stegun 7.1.26: absolute error <= 1.5e-7), odd, NaN stays NaN.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_72 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp_neg(-a * a);
    if x < 0.0 { -y } else { y }
}

/// Exact GELU and its derivative: `x Φ(x)`, `Φ(x) + x φ(x)`.
struct GeluErf;

impl Elementwise for GeluErf {
    #[inline(always)]
    fn apply(x: f32) -> (f32, f32) {
        const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
        (x * cdf, cdf + x * INV_SQRT_2PI * exp_neg(-0.5 * x * x))
    }
}

/// Host exact GELU in place: `x` becomes `x Φ(x)`; returns `Φ(x) + x φ(x)` when asked.
fn gelu_erf_host(x: &mut [f32], want_grad: bool) -> Vec<f32> {
    map_host::<GeluErf>(x, want_grad)
}

/// Exact GELU, `x Φ(x) = 0.5 x (1 + erf(x / sqrt 2))` (HF `hidden_act = "gelu"`, BERT),
/// elementwise, any shape.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_host(&x) {
        return burn::tensor::activation::gelu(x);
    }
    Tensor::from_dispatch(<Dispatch as FusedBackend>::fused_gelu(
        x.into_dispatch(),
        true,
    ))
}

/// GELU in place; returns the derivative when `want_grad` (else empty).
pub(super) fn gelu_in_place(x: &mut [f32], exact: bool, want_grad: bool) -> Vec<f32> {
    if exact {
        gelu_erf_host(x, want_grad)
    } else {
        gelu_host(x, want_grad)
    }
}

/// Backward of GELU: `dx = dy ⊙ g`, `g` the derivative saved by the forward pass.
#[derive(Debug)]
pub(super) struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let mut dx = writable(grads.consume::<Flex>(&ops.node));
        if let Some(node) = node {
            mul_in_place(values_mut(&mut dx), &host(&ops.state));
            grads.register::<Flex>(node.id, dx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::tests::max_rel_diff;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn gelu_matches_the_formula_in_value_and_gradient() {
        let d = Device::flex().autodiff();
        let x =
            Tensor::<3>::random([2, 33, 700], Distribution::Normal(0.0, 3.0), &d).require_grad();
        let w = Tensor::<3>::random([2, 33, 700], Distribution::Default, &d);
        let fused = gelu_new(x.clone());
        let reference = gelu_reference(x.clone());
        assert!(max_rel_diff(fused.clone().detach(), reference.clone().detach()) < 1e-6);
        let g1 = x.grad(&(fused * w.clone()).sum().backward());
        let g2 = x.grad(&(reference * w).sum().backward());
        let (Some(g1), Some(g2)) = (g1, g2) else {
            panic!("no gradient")
        };
        assert!(max_rel_diff(g1, g2) < 1e-5);
    }

    #[test]
    fn exact_gelu_matches_burn_in_value_and_gradient() {
        let d = Device::flex().autodiff();
        let x = Tensor::<2>::random([70, 300], Distribution::Normal(0.0, 3.0), &d).require_grad();
        let w = Tensor::<2>::random([70, 300], Distribution::Default, &d);
        let fused = gelu(x.clone());
        let reference = burn::tensor::activation::gelu(x.clone());
        assert!(max_rel_diff(fused.clone().detach(), reference.clone().detach()) < 1e-6);
        let g1 = x.grad(&(fused * w.clone()).sum().backward());
        let g2 = x.grad(&(reference * w).sum().backward());
        let (Some(g1), Some(g2)) = (g1, g2) else {
            panic!("no gradient")
        };
        assert!(max_rel_diff(g1, g2) < 1e-5);
    }
}
