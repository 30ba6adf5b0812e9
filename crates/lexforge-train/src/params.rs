//! Parameter-level helpers: stable parameter ids (so optimizer state survives a restart) and
//! global gradient-norm clipping (PyTorch's `clip_grad_norm_`).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{FloatDType, Tensor};

/// Gives every float parameter of `module` an id derived from its path in the module tree
/// (`h.0.attn.c_attn.weight` → FNV-1a hash), instead of the random id burn assigns at creation.
///
/// burn keys optimizer state by [`ParamId`]; a model rebuilt in a new process gets new random
/// ids, so a saved optimizer record would no longer match it. With path-derived ids the same
/// architecture always has the same ids, and a checkpoint's optimizer state reattaches
/// exactly. Two different parameters never share a path, so ids stay unique within a module.
pub fn with_stable_param_ids<M: Module>(module: M) -> M {
    let mut mapper = StableIds { path: Vec::new() };
    module.map(&mut mapper)
}

struct StableIds {
    path: Vec<String>,
}

fn path_id(path: &[String]) -> ParamId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in path.iter().enumerate() {
        if i > 0 {
            h ^= u64::from(b'.');
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in part.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    ParamId::from(h)
}

impl ModuleMapper for StableIds {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(path_id(&self.path), value, mapper)
    }
}

/// Casts every float parameter of `module` to `dtype` (ids kept).
///
/// `leaf`: the cast values become new leaves (gradients are tracked on them, nothing flows
/// back): how f32 master weights are made from a model built in f16. Otherwise the cast stays
/// in the autodiff graph, so gradients of the cast copy reach the original parameters in
/// their own dtype: the working copy that mixed-precision training computes with.
pub fn cast_params<M: Module>(module: M, dtype: FloatDType, leaf: bool) -> M {
    module.map(&mut Cast { dtype, leaf })
}

struct Cast {
    dtype: FloatDType,
    leaf: bool,
}

impl ModuleMapper for Cast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (dtype, leaf) = (self.dtype, self.leaf);
        param.map(|t| {
            if leaf {
                let grad = t.is_require_grad();
                t.cast(dtype).detach().set_require_grad(grad)
            } else {
                t.cast(dtype)
            }
        })
    }
}

/// Scales all gradients together so that their global L2 norm is at most `max_norm` (PyTorch's
/// `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping. burn's own
/// `GradientClipping::Norm` clips each parameter separately, which is a different update.
pub fn clip_global_norm<M: Module>(
    module: &M,
    grads: GradientsParams,
    max_norm: Option<f64>,
) -> (GradientsParams, f64) {
    let mut sum = SquaredNorm {
        grads: &grads,
        total: None,
    };
    module.visit(&mut sum);
    let norm = sum
        .total
        .map(|t| f64::from(t.into_scalar::<f32>()).sqrt())
        .unwrap_or(0.0);
    let Some(max_norm) = max_norm else {
        return (grads, norm);
    };
    // PyTorch: clip_coef = max_norm / (total_norm + 1e-6), applied only when < 1.
    let coef = max_norm / (norm + 1e-6);
    if coef >= 1.0 || !norm.is_finite() {
        return (grads, norm);
    }
    let mut scale = Scale { grads, coef };
    module.visit(&mut scale);
    (scale.grads, norm)
}

/// Multiplies every gradient of `module`'s parameters by `factor` (loss scaling undoes its
/// scale with `1 / scale`).
pub fn scale_grads<M: Module>(module: &M, grads: GradientsParams, factor: f64) -> GradientsParams {
    let mut scale = Scale {
        grads,
        coef: factor,
    };
    module.visit(&mut scale);
    scale.grads
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            // In f32 whatever the training precision: a sum of squares overflows f16 long
            // before the norm does.
            let sq = crate::host_ops::squared_sum(g.cast(FloatDType::F32));
            self.total = Some(match self.total.take() {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
}

struct Scale {
    grads: GradientsParams,
    coef: f64,
}

impl ModuleVisitor for Scale {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads
                .register::<D>(param.id, crate::host_ops::scaled(g, self.coef));
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, Param};
    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;

    #[derive(Module, Debug)]
    struct Two {
        a: Param<Tensor<1>>,
        b: Param<Tensor<2>>,
    }

    fn two(device: &Device) -> Two {
        Two {
            a: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![3.0f32], [1]),
                device,
            )),
            b: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![4.0f32], [1, 1]),
                device,
            )),
        }
    }

    #[test]
    fn ids_depend_on_paths_only() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        let (x, y) = (
            with_stable_param_ids(two(&device)),
            with_stable_param_ids(two(&device)),
        );
        assert_eq!(x.a.id, y.a.id);
        assert_eq!(x.b.id, y.b.id);
        assert_ne!(x.a.id, x.b.id);
        assert_ne!(
            two(&device).a.id,
            two(&device).a.id,
            "burn's ids are random"
        );
    }

    #[test]
    fn clipping_scales_all_gradients_by_one_factor() {
        let _rng = crate::serial_rng();
        let device = Device::flex().autodiff();
        let m = two(&device);
        // loss = a^2/2 + b^2/2 → grads (3, 4), global norm 5.
        let loss = m.a.val().powf_scalar(2.0).sum() * 0.5
            + m.b.val().powf_scalar(2.0).sum().reshape([1]) * 0.5;
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        let (grads, norm) = clip_global_norm(&m, grads, Some(1.0));
        assert!((norm - 5.0).abs() < 1e-5, "{norm}");
        let a = grads.get::<1>(m.a.id).unwrap().into_scalar::<f32>();
        let b = grads.get::<2>(m.b.id).unwrap().sum().into_scalar::<f32>();
        assert!((a - 0.6).abs() < 1e-5 && (b - 0.8).abs() < 1e-5, "{a} {b}");
        let grads =
            GradientsParams::from_grads((m.a.val().powf_scalar(2.0).sum() * 0.5).backward(), &m);
        let (grads, norm) = clip_global_norm(&m, grads, Some(10.0));
        assert!((norm - 3.0).abs() < 1e-5);
        assert_eq!(grads.get::<1>(m.a.id).unwrap().into_scalar::<f32>(), 3.0);
    }
}
