//! [`OptimizerConfig`] and [`AdamW`]: `torch.optim.AdamW` with its defaults, state in f32.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::host_ops::{AdamWScalars, adamw_update};

/// AdamW hyper-parameters with the defaults of `torch.optim.AdamW` (burn's own defaults differ:
/// epsilon 1e-5, weight decay 1e-4), plus gradient-norm clipping. The learning rate is not
/// here: [`crate::LrSchedule`] gives it per step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerConfig {
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the denominator.
    pub epsilon: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Clip the global gradient norm (over all parameters at once, as PyTorch's
    /// `clip_grad_norm_`) to this value (`None`: no clipping). Applied by the engine
    /// ([`crate::clip_global_norm`]), not by burn's optimizer, whose clipping is per parameter.
    pub grad_clip_norm: Option<f32>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
            grad_clip_norm: Some(1.0),
        }
    }
}

impl OptimizerConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |parameter, reason: String| Err(TrainError::InvalidParameter { parameter, reason });
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(name, format!("{b} is not in [0, 1)"));
            }
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return bad("epsilon", format!("{} must be positive", self.epsilon));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(
                "weight_decay",
                format!("{} must be >= 0", self.weight_decay),
            );
        }
        if let Some(c) = self.grad_clip_norm
            && !(c > 0.0 && c.is_finite())
        {
            return bad("grad_clip_norm", format!("{c} must be positive"));
        }
        Ok(())
    }

    /// The optimizer (AdamW; the engine clips the global norm).
    pub fn build(&self) -> Result<AdamW> {
        self.validate()?;
        Ok(AdamW {
            config: self.clone(),
            states: HashMap::new(),
        })
    }
}

/// AdamW as `torch.optim.AdamW` computes it (decoupled weight decay, bias-corrected moments,
/// epsilon added to the corrected root):
///
/// ```text
/// p ← p·(1 − lr·wd);  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²
/// p ← p − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)
/// ```
///
/// The moments and the update are computed in f32 whatever the parameters' precision, and are
/// saved and loaded in f32 ([`AdamW::to_bytes`], [`AdamW::load_bytes`]): an f16 second moment
/// underflows for gradients below ~1e-2 and the update then explodes, which is why
/// mixed-precision training keeps optimizer state in f32. State is keyed by [`ParamId`] (see
/// [`crate::with_stable_param_ids`]).
#[derive(Debug, Clone)]
pub struct AdamW {
    config: OptimizerConfig,
    states: HashMap<ParamId, Moments>,
}

/// One parameter's state, flattened to 1-D, f32.
#[derive(Debug, Clone)]
struct Moments {
    step: u64,
    m: Tensor<1>,
    v: Tensor<1>,
}

impl AdamW {
    /// Updates every parameter of `module` that has a gradient in `grads`, with learning rate
    /// `lr`. Parameters keep their precision, device and `require_grad`.
    pub fn step<M: Module>(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        let mut stepper = Stepper {
            optimizer: self,
            grads,
            lr,
        };
        module.map(&mut stepper)
    }

    /// Parameters with state (those that have been stepped at least once).
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no parameter has state yet.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The state as safetensors bytes: `"{id}.m"`, `"{id}.v"` (f32) and the step counts in the
    /// header's metadata, as one JSON object under `"steps"` (`{"{id}": step}`, sorted), so the
    /// same state always gives the same bytes.
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] when a state tensor cannot be read back or serialized.
    pub fn to_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        let bad = |reason: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let mut tensors: BTreeMap<String, (usize, Vec<u8>)> = BTreeMap::new();
        let mut steps: BTreeMap<String, u64> = BTreeMap::new();
        for (id, state) in &self.states {
            let key = id.val().to_string();
            steps.insert(key.clone(), state.step);
            for (leaf, t) in [("m", &state.m), ("v", &state.v)] {
                let values = t
                    .clone()
                    .into_data()
                    .try_into_vec_as::<f32>()
                    .map_err(|e| bad(format!("cannot read optimizer state: {e:?}")))?;
                let bytes = values.iter().flat_map(|x| x.to_le_bytes()).collect();
                tensors.insert(format!("{key}.{leaf}"), (values.len(), bytes));
            }
        }
        let views = tensors
            .iter()
            .map(|(name, (n, bytes))| {
                safetensors::tensor::TensorView::new(Dtype::F32, vec![*n], bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| bad(format!("optimizer tensor {name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let steps = serde_json::to_string(&steps)
            .map_err(|e| bad(format!("cannot serialize the step counts: {e}")))?;
        let metadata = HashMap::from([(STEPS_KEY.to_owned(), steps)]);
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| bad(format!("cannot serialize the optimizer state: {e}")))
    }

    /// Restores state written by [`AdamW::to_bytes`] (read from `path`) onto `device`, replacing
    /// any state held.
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] when the bytes are not such a file (truncated, foreign).
    pub fn load_bytes(mut self, bytes: &[u8], path: &Path, device: &Device) -> Result<Self> {
        let bad = |reason: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("optimizer state: {reason}"),
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let mut steps: BTreeMap<String, u64> = BTreeMap::new();
        if let Some(json) = metadata.get(STEPS_KEY) {
            steps = serde_json::from_str(json).map_err(|e| bad(format!("step counts: {e}")))?;
        }
        // Files written before the `steps` key: one `"{id}.step"` entry per parameter.
        for (key, step) in &metadata {
            if let Some(id) = key.strip_suffix(".step") {
                let step = step
                    .parse()
                    .map_err(|_| bad(format!("step count {step:?} of {id}")))?;
                steps.insert(id.to_owned(), step);
            }
        }
        let device = device.clone().without_autodiff();
        let mut states = HashMap::new();
        for (id, &step) in &steps {
            let id_num: u64 = id
                .parse()
                .map_err(|_| bad(format!("parameter id {id:?}")))?;
            let read = |leaf: &str| -> Result<Tensor<1>> {
                let name = format!("{id}.{leaf}");
                let view = st.tensor(&name).map_err(|e| bad(format!("{name}: {e}")))?;
                if view.dtype() != Dtype::F32 || view.shape().len() != 1 {
                    return Err(bad(format!("{name} is not a 1-D f32 tensor")));
                }
                let values: Vec<f32> = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let n = values.len();
                Ok(Tensor::from_data(
                    TensorData::new(values, [n]),
                    (&device, DType::F32),
                ))
            };
            let (m, v) = (read("m")?, read("v")?);
            if m.dims() != v.dims() {
                return Err(bad(format!("the moments of {id} differ in length")));
            }
            states.insert(ParamId::from(id_num), Moments { step, m, v });
        }
        self.states = states;
        Ok(self)
    }
}

/// The metadata key of the step counts in `optimizer.safetensors`.
const STEPS_KEY: &str = "steps";

struct Stepper<'a> {
    optimizer: &'a mut AdamW,
    grads: GradientsParams,
    lr: f64,
}

impl ModuleMapper for Stepper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let c = &self.optimizer.config;
        let require_grad = tensor.is_require_grad();
        let autodiff = tensor.is_autodiff();
        let dims = tensor.dims();
        let dtype = tensor.dtype();
        let n: usize = dims.iter().product();
        let p = tensor.without_autodiff().cast(FloatDType::F32).reshape([n]);
        let device = p.device();
        let g = grad
            .without_autodiff()
            .to_device(&device)
            .cast(FloatDType::F32)
            .reshape([n]);
        let state = match self.optimizer.states.remove(&id) {
            Some(s) if s.m.dims() == [n] => Moments {
                step: s.step,
                m: s.m.to_device(&device),
                v: s.v.to_device(&device),
            },
            _ => Moments {
                step: 0,
                m: Tensor::zeros([n], (&device, DType::F32)),
                v: Tensor::zeros([n], (&device, DType::F32)),
            },
        };
        let step = state.step + 1;
        let t = i32::try_from(step).unwrap_or(i32::MAX);
        let scalars = AdamWScalars {
            lr: self.lr as f32,
            beta1: c.beta1,
            beta2: c.beta2,
            epsilon: c.epsilon,
            weight_decay: c.weight_decay,
            correction1: (1.0 - f64::from(c.beta1).powi(t)) as f32,
            correction2: (1.0 - f64::from(c.beta2).powi(t)) as f32,
        };
        let (p, m, v) = adamw_update(p, g, state.m, state.v, scalars);
        self.optimizer.states.insert(id, Moments { step, m, v });
        let mut out = p.reshape(dims).cast(dtype);
        if autodiff {
            out = out.autodiff();
        }
        if require_grad {
            out = out.require_grad();
        }
        Param::from_mapped_value(id, out, mapper)
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;

    #[derive(Module, Debug)]
    struct Quadratic {
        w: Param<Tensor<1>>,
    }

    #[test]
    fn defaults_are_pytorchs_and_bad_values_are_refused() {
        let _rng = crate::serial_rng();
        let c = OptimizerConfig::default();
        assert_eq!((c.epsilon, c.weight_decay), (1e-8, 0.01));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<OptimizerConfig>("{}").unwrap(), c);
        assert_eq!(serde_json::from_str::<OptimizerConfig>(&json).unwrap(), c);
        for bad in [
            OptimizerConfig {
                beta1: 1.0,
                ..c.clone()
            },
            OptimizerConfig {
                epsilon: 0.0,
                ..c.clone()
            },
            OptimizerConfig {
                weight_decay: -1.0,
                ..c.clone()
            },
            OptimizerConfig {
                grad_clip_norm: Some(0.0),
                ..c.clone()
            },
        ] {
            assert!(bad.build().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn minimizes_a_quadratic_with_clipped_steps() {
        let _rng = crate::serial_rng();
        let device = Device::flex().autodiff();
        let mut m = Quadratic {
            w: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![5.0f32, -3.0], [2]),
                &device,
            )),
        };
        let mut optim = OptimizerConfig {
            weight_decay: 0.0,
            ..OptimizerConfig::default()
        }
        .build()
        .unwrap();
        for _ in 0..300 {
            let loss = m.w.val().powf_scalar(2.0).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            m = optim.step(0.05, m, grads);
        }
        let w =
            m.w.val()
                .into_data()
                .convert::<f32>()
                .try_into_vec_as::<f32>()
                .unwrap();
        assert!(w.iter().all(|x| x.abs() < 0.1), "{w:?}");
    }

    fn quadratic_steps(optim: &mut AdamW, mut m: Quadratic, steps: usize) -> Quadratic {
        for _ in 0..steps {
            let loss = m.w.val().powf_scalar(2.0).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            m = optim.step(0.1, m, grads);
        }
        m
    }

    fn values(m: &Quadratic) -> Vec<f32> {
        m.w.val().into_data().try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn matches_torch_adamw_and_its_state_round_trips() {
        let _rng = crate::serial_rng();
        let device = Device::flex().autodiff();
        let start = || Quadratic {
            w: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![5.0f32, -3.0, 1e-3], [3]),
                &device,
            ))
            .set_require_grad(true),
        };
        // torch.optim.AdamW([w], lr=0.1, weight_decay=0.01), 3 steps of (w**2).sum().
        let torch = [4.685_54_f32, -2.691_703_6, 0.045_840_725];
        let mut optim = OptimizerConfig::default().build().unwrap();
        let three = quadratic_steps(&mut optim, start(), 3);
        for (a, b) in values(&three).iter().zip(torch) {
            assert!((a - b).abs() < 1e-5, "{:?} vs {torch:?}", values(&three));
        }
        // 2 steps, save, load into a fresh optimizer, 1 more step: the same as 3 in a row.
        let mut first = OptimizerConfig::default().build().unwrap();
        let two = quadratic_steps(&mut first, start(), 2);
        let path = Path::new("optimizer.safetensors");
        let bytes = first.to_bytes(path).unwrap();
        let mut second = OptimizerConfig::default()
            .build()
            .unwrap()
            .load_bytes(&bytes, path, &device)
            .unwrap();
        assert_eq!(second.len(), 1);
        let resumed = quadratic_steps(&mut second, two, 1);
        assert_eq!(values(&resumed), values(&three));
        // A truncated or foreign file is a typed error.
        for broken in [&bytes[..bytes.len() / 2], b"not safetensors".as_slice()] {
            let err = OptimizerConfig::default()
                .build()
                .unwrap()
                .load_bytes(broken, path, &device)
                .unwrap_err();
            assert!(matches!(err, TrainError::Checkpoint { .. }), "{err}");
        }
    }
}
