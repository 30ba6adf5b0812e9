//! HF GPT-2 weights in and out: `config.json` + `model.safetensors` with HF tensor names.
//!
//! Remap table (checkpoint name → module path; shapes for `d = n_embd`):
//!
//! | HF name | lexforge | note |
//! | --- | --- | --- |
//! | `transformer.wte.weight` `[vocab, d]` | `wte.weight` | also the LM head when tied |
//! | `transformer.wpe.weight` `[n_positions, d]` | `wpe.weight` | |
//! | `transformer.h.{i}.ln_1.{weight,bias}` | `h[i].ln_1.{gamma,beta}` | same for `ln_2`, `ln_f` |
//! | `transformer.h.{i}.attn.c_attn.{weight,bias}` `[d, 3d]` | `h[i].attn.c_attn` | HF Conv1D stores `[in, out]`, as burn's `Linear`: no transpose |
//! | `transformer.h.{i}.attn.c_proj.*` `[d, d]` | `h[i].attn.c_proj` | Conv1D |
//! | `transformer.h.{i}.mlp.c_fc.*` `[d, inner]`, `mlp.c_proj.*` `[inner, d]` | `h[i].mlp.*` | Conv1D |
//! | `lm_head.weight` `[vocab, d]` | `lm_head.weight` `[d, vocab]` | untied only; torch `Linear` is `[out, in]`: transposed |
//!
//! Names without the `transformer.` prefix (a bare `GPT2Model`) are accepted; the attention
//! mask buffers of old checkpoints (`attn.bias`, `attn.masked_bias`) are ignored.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use super::config::Gpt2Config;
use super::model::Gpt2;
use crate::error::{NnError, Result};

/// The weights file of a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The config file of a model directory.
pub const CONFIG_FILE: &str = "config.json";

struct Reader<'a> {
    path: &'a Path,
    st: SafeTensors<'a>,
    prefix: &'static str,
    device: &'a Device,
}

impl Reader<'_> {
    fn get<const D: usize>(&self, name: &str, expected: [usize; D]) -> Result<Tensor<D>> {
        let full = format!("{}{name}", self.prefix);
        let view = self.st.tensor(&full).map_err(|_| NnError::MissingTensor {
            path: self.path.to_path_buf(),
            name: full.clone(),
        })?;
        if view.shape() != expected {
            return Err(NnError::ShapeMismatch {
                path: self.path.to_path_buf(),
                name: full,
                expected: expected.to_vec(),
                got: view.shape().to_vec(),
            });
        }
        let bytes = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(NnError::Weights {
                    path: self.path.to_path_buf(),
                    reason: format!("tensor {full} has dtype {other:?}; expected F32, F16 or BF16"),
                });
            }
        };
        Ok(Tensor::from_data(
            TensorData::new(values, expected),
            self.device,
        ))
    }

    fn linear(&self, lin: &mut Linear, name: &str, d_in: usize, d_out: usize) -> Result<()> {
        lin.weight = Param::from_tensor(self.get(&format!("{name}.weight"), [d_in, d_out])?);
        lin.bias = Some(Param::from_tensor(
            self.get(&format!("{name}.bias"), [d_out])?,
        ));
        Ok(())
    }

    fn norm(&self, ln: &mut LayerNorm, name: &str, d: usize) -> Result<()> {
        ln.gamma = Param::from_tensor(self.get(&format!("{name}.weight"), [d])?);
        ln.beta = Some(Param::from_tensor(self.get(&format!("{name}.bias"), [d])?));
        Ok(())
    }
}

/// Loads an HF GPT-2 directory (`config.json` + `model.safetensors`) onto `device`.
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<(Gpt2Config, Gpt2)> {
    let config_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| lexforge_core::Error::io("read model config", &config_path, e))?;
    let config: Gpt2Config = serde_json::from_str(&text).map_err(|source| {
        NnError::Core(lexforge_core::Error::Json {
            path: config_path.clone(),
            source,
        })
    })?;
    let path = dir.join(WEIGHTS_FILE);
    let bytes =
        std::fs::read(&path).map_err(|e| lexforge_core::Error::io("read weights", &path, e))?;
    let model = load_weights(&config, &path, &bytes, device)?;
    Ok((config, model))
}

/// Builds a model for `config` from safetensors `bytes` (read from `path`, named in errors).
pub fn load_weights(
    config: &Gpt2Config,
    path: &Path,
    bytes: &[u8],
    device: &Device,
) -> Result<Gpt2> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| NnError::Weights {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let prefix = if st.names().iter().any(|n| n.starts_with("transformer.")) {
        "transformer."
    } else {
        ""
    };
    let mut model = Gpt2::new(config, device)?;
    let r = Reader {
        path,
        st,
        prefix,
        device,
    };
    let (d, inner, v) = (config.n_embd, config.inner(), config.vocab_size);
    model.wte.weight = Param::from_tensor(r.get("wte.weight", [v, d])?);
    model.wpe.weight = Param::from_tensor(r.get("wpe.weight", [config.n_positions, d])?);
    for (i, block) in model.h.iter_mut().enumerate() {
        let p = format!("h.{i}");
        r.norm(&mut block.ln_1, &format!("{p}.ln_1"), d)?;
        r.linear(
            &mut block.attn.c_attn,
            &format!("{p}.attn.c_attn"),
            d,
            3 * d,
        )?;
        r.linear(&mut block.attn.c_proj, &format!("{p}.attn.c_proj"), d, d)?;
        r.norm(&mut block.ln_2, &format!("{p}.ln_2"), d)?;
        r.linear(&mut block.mlp.c_fc, &format!("{p}.mlp.c_fc"), d, inner)?;
        r.linear(&mut block.mlp.c_proj, &format!("{p}.mlp.c_proj"), inner, d)?;
    }
    r.norm(&mut model.ln_f, "ln_f", d)?;
    if let Some(head) = model.lm_head.as_mut() {
        let r = Reader { prefix: "", ..r };
        let w: Tensor<2> = r.get("lm_head.weight", [v, d])?;
        head.weight = Param::from_tensor(w.transpose());
    }
    Ok(model)
}

fn tensor_bytes<const D: usize>(t: Tensor<D>) -> Result<(Vec<usize>, Vec<u8>)> {
    let shape = t.dims().to_vec();
    let values = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| NnError::InvalidInput {
            reason: format!("cannot read back a parameter: {e:?}"),
        })?;
    Ok((shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()))
}

/// Writes `model` as an HF GPT-2 directory (`config.json` + `model.safetensors`, HF names,
/// f32), each file atomically. `transformers.GPT2LMHeadModel.from_pretrained(dir)` loads it.
pub fn save_hf_dir(model: &Gpt2, config: &Gpt2Config, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| lexforge_core::Error::io("create directory", dir, e))?;
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    let mut put = |name: String, t: (Vec<usize>, Vec<u8>)| {
        tensors.insert(name, t);
    };
    put(
        "transformer.wte.weight".into(),
        tensor_bytes(model.wte.weight.val())?,
    );
    put(
        "transformer.wpe.weight".into(),
        tensor_bytes(model.wpe.weight.val())?,
    );
    let lin = |l: &Linear| -> Result<[(Vec<usize>, Vec<u8>); 2]> {
        let bias = l.bias.as_ref().ok_or_else(|| NnError::InvalidInput {
            reason: "a GPT-2 projection without bias".to_owned(),
        })?;
        Ok([tensor_bytes(l.weight.val())?, tensor_bytes(bias.val())?])
    };
    let norm = |n: &LayerNorm| -> Result<[(Vec<usize>, Vec<u8>); 2]> {
        let beta = n.beta.as_ref().ok_or_else(|| NnError::InvalidInput {
            reason: "a GPT-2 layer norm without bias".to_owned(),
        })?;
        Ok([tensor_bytes(n.gamma.val())?, tensor_bytes(beta.val())?])
    };
    for (i, b) in model.h.iter().enumerate() {
        let p = format!("transformer.h.{i}");
        for (name, [w, bias]) in [
            ("ln_1", norm(&b.ln_1)?),
            ("attn.c_attn", lin(&b.attn.c_attn)?),
            ("attn.c_proj", lin(&b.attn.c_proj)?),
            ("ln_2", norm(&b.ln_2)?),
            ("mlp.c_fc", lin(&b.mlp.c_fc)?),
            ("mlp.c_proj", lin(&b.mlp.c_proj)?),
        ] {
            put(format!("{p}.{name}.weight"), w);
            put(format!("{p}.{name}.bias"), bias);
        }
    }
    let [w, b] = norm(&model.ln_f)?;
    put("transformer.ln_f.weight".into(), w);
    put("transformer.ln_f.bias".into(), b);
    if let Some(head) = &model.lm_head {
        put(
            "lm_head.weight".into(),
            tensor_bytes(head.weight.val().transpose())?,
        );
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, (shape, data))| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| NnError::InvalidInput {
                    reason: format!("tensor {name}: {e}"),
                })
        })
        .collect::<Result<_>>()?;
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_owned(),
        "pt".to_owned(),
    )]));
    let bytes = safetensors::serialize(views, metadata).map_err(|e| NnError::InvalidInput {
        reason: format!("cannot serialize weights: {e}"),
    })?;
    lexforge_core::atomic_write(&dir.join(WEIGHTS_FILE), &bytes)?;
    let json =
        serde_json::to_vec_pretty(config).map_err(|source| lexforge_core::Error::Serialize {
            what: "model config",
            source,
        })?;
    lexforge_core::atomic_write(&dir.join(CONFIG_FILE), &json)?;
    Ok(())
}
