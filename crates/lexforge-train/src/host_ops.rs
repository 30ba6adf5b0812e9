//! The optimizer's element-wise passes as single parallel operations on flex's buffers.
//!
//! burn's CPU backend runs each element-wise operation on one thread and allocates its output.
//! An AdamW step written with tensor operations is a dozen passes over every parameter, and
//! the global-norm clip two more; together they took ~80 ms of a 6-layer GPT-2 step at 2
//! threads. On the flex device with f32 tensors, [`adamw_update`], [`squared_sum`] and
//! [`scaled`] are each one pass on the rayon pool, writing into their inputs' buffers when no
//! other tensor shares them. Every other device and precision runs the same formulas as
//! tensor operations, so results agree up to float rounding (tests compare both).

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Device, Tensor};
use lexforge_core::host::{flex_tensor, host, par_scale, values_mut, writable};
use rayon::prelude::*;

/// Elements per rayon task.
const CHUNK: usize = 1 << 15;

/// The scalars of one AdamW update (see [`crate::AdamW`] for the formula).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWScalars {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the denominator.
    pub epsilon: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// `1 - beta1^t`.
    pub correction1: f32,
    /// `1 - beta2^t`.
    pub correction2: f32,
}

/// The passes as backend operations (flex only: the optimizer works on tensors without
/// autodiff).
#[backend_extension(Flex)]
pub trait HostOptimBackend: Backend {
    /// One AdamW update of 1-D `p`, `m`, `v` by gradient `g`: the new `(p, m, v)`.
    fn host_adamw(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        s: AdamWScalars,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `Σ x²` as a `[1]` tensor (summed in f64).
    fn host_squared_sum(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `x * factor`.
    fn host_scaled(x: FloatTensor<Self>, factor: f32) -> FloatTensor<Self>;
}

fn on_host<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && x.device() == Device::flex() && !x.device().is_autodiff()
}

/// One AdamW update; `p`, `g`, `m`, `v` are 1-D f32 tensors of the same length on one device
/// without autodiff. Returns the new `(p, m, v)`.
pub fn adamw_update(
    p: Tensor<1>,
    g: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    s: AdamWScalars,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    if [&p, &g, &m, &v].iter().all(|t| on_host(t)) {
        let (p, m, v) = <Dispatch as HostOptimBackend>::host_adamw(
            p.into_dispatch(),
            g.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
            s,
        );
        return (
            Tensor::from_dispatch(p),
            Tensor::from_dispatch(m),
            Tensor::from_dispatch(v),
        );
    }
    let (b1, b2) = (f64::from(s.beta1), f64::from(s.beta2));
    let m = m * b1 + g.clone() * (1.0 - b1);
    let v = v * b2 + g.powf_scalar(2.0) * (1.0 - b2);
    let m_hat = m.clone() / f64::from(s.correction1);
    let v_hat = v.clone() / f64::from(s.correction2);
    let update = m_hat / (v_hat.sqrt() + f64::from(s.epsilon));
    let decayed = p * (1.0 - f64::from(s.lr) * f64::from(s.weight_decay));
    (decayed - update * f64::from(s.lr), m, v)
}

/// `Σ x²` of an f32 tensor without autodiff, as a `[1]` tensor.
pub fn squared_sum<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    if on_host(&x) {
        let n = x.shape().num_elements();
        return Tensor::from_dispatch(<Dispatch as HostOptimBackend>::host_squared_sum(
            x.reshape([n]).into_dispatch(),
        ));
    }
    x.powf_scalar(2.0).sum()
}

/// `x * factor` (in `x`'s buffer when no other tensor shares it).
pub fn scaled<const D: usize>(x: Tensor<D>, factor: f64) -> Tensor<D> {
    if on_host(&x) {
        let dims = x.dims();
        let n = x.shape().num_elements();
        let y = Tensor::<1>::from_dispatch(<Dispatch as HostOptimBackend>::host_scaled(
            x.reshape([n]).into_dispatch(),
            factor as f32,
        ));
        return y.reshape(dims);
    }
    x * factor
}

impl HostOptimBackend for Flex {
    fn host_adamw(
        p: FlexTensor,
        g: FlexTensor,
        m: FlexTensor,
        v: FlexTensor,
        s: AdamWScalars,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (mut p, mut m, mut v) = (writable(p), writable(m), writable(v));
        let g = host(&g);
        let decay = 1.0 - s.lr * s.weight_decay;
        let (c1, c2) = (1.0 - s.beta1, 1.0 - s.beta2);
        values_mut(&mut p)
            .par_chunks_mut(CHUNK)
            .zip(values_mut(&mut m).par_chunks_mut(CHUNK))
            .zip(values_mut(&mut v).par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                    *m = *m * s.beta1 + g * c1;
                    *v = *v * s.beta2 + g * g * c2;
                    let update = (*m / s.correction1) / ((*v / s.correction2).sqrt() + s.epsilon);
                    *p = *p * decay - update * s.lr;
                }
            });
        (p, m, v)
    }

    fn host_squared_sum(x: FlexTensor) -> FlexTensor {
        let sum: f64 = host(&x)
            .par_chunks(CHUNK)
            .map(|c| c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>())
            .sum();
        flex_tensor(vec![sum as f32], &[1])
    }

    fn host_scaled(x: FlexTensor, factor: f32) -> FlexTensor {
        let mut y = writable(x);
        par_scale(values_mut(&mut y), factor);
        y
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    fn plain(x: &Tensor<1>) -> Tensor<1> {
        // A copy on the same values that the host path does not recognize (f64 stays on the
        // tensor-operation route).
        x.clone().cast(burn::tensor::FloatDType::F64)
    }

    #[test]
    fn the_host_passes_equal_the_tensor_formulas() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        lexforge_core::Seed(9).apply_to(&device);
        let t =
            |mean: f64| Tensor::<1>::random([100_003], Distribution::Normal(mean, 1.0), &device);
        let (p, g, m) = (t(0.0), t(0.0), t(0.0));
        let v = t(0.0).abs();
        let s = AdamWScalars {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
            correction1: 1.0 - 0.9f32.powi(3),
            correction2: 1.0 - 0.999f32.powi(3),
        };
        let ours = adamw_update(p.clone(), g.clone(), m.clone(), v.clone(), s);
        let theirs = adamw_update(plain(&p), plain(&g), plain(&m), plain(&v), s);
        let tol = Tolerance::<f32>::absolute(1e-5);
        let f32_of = |x: Tensor<1>| x.cast(burn::tensor::FloatDType::F32).to_data();
        ours.0.to_data().assert_approx_eq(&f32_of(theirs.0), tol);
        ours.1.to_data().assert_approx_eq(&f32_of(theirs.1), tol);
        ours.2.to_data().assert_approx_eq(&f32_of(theirs.2), tol);
        let a = squared_sum(g.clone()).into_scalar::<f32>();
        let b = squared_sum(plain(&g)).into_scalar::<f64>() as f32;
        assert!((a - b).abs() < 1e-4 * b, "{a} vs {b}");
        scaled(g.clone(), 0.25)
            .to_data()
            .assert_approx_eq(&f32_of(scaled(plain(&g), 0.25)), tol);
    }

    #[test]
    fn shared_inputs_are_not_overwritten() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        let x = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device);
        let before = x.to_data();
        let _ = scaled(x.clone(), 2.0);
        let s = AdamWScalars {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
            correction1: 0.1,
            correction2: 0.001,
        };
        let _ = adamw_update(x.clone(), x.clone(), x.clone(), x.clone(), s);
        x.to_data().assert_eq(&before, true);
    }
}
