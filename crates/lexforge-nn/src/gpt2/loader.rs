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

use std::path::Path;

use burn::module::Param;
use burn::tensor::{Device, Tensor};

use super::config::Gpt2Config;
use super::model::Gpt2;
use crate::error::Result;
use crate::hf::{self, CONFIG_FILE, HfReader, HfWriter, WEIGHTS_FILE, WeightLayout};

/// Loads an HF GPT-2 directory (`config.json` + `model.safetensors`) onto `device`.
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<(Gpt2Config, Gpt2)> {
    let config: Gpt2Config = hf::read_json(&dir.join(CONFIG_FILE), "read model config")?;
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
    let st = hf::parse(path, bytes)?;
    let prefix = if st.names().iter().any(|n| n.starts_with("transformer.")) {
        "transformer."
    } else {
        ""
    };
    let mut model = Gpt2::new(config, device)?;
    let r = HfReader::new(path, &st, prefix, device);
    let (d, inner, v) = (config.n_embd, config.inner(), config.vocab_size);
    let conv = WeightLayout::InOut;
    model.wte.weight = Param::from_tensor(r.get("wte.weight", [v, d])?);
    model.wpe.weight = Param::from_tensor(r.get("wpe.weight", [config.n_positions, d])?);
    for (i, block) in model.h.iter_mut().enumerate() {
        let p = format!("h.{i}");
        r.norm(&mut block.ln_1, &format!("{p}.ln_1"), d)?;
        r.linear(
            &mut block.attn.c_attn,
            &format!("{p}.attn.c_attn"),
            conv,
            d,
            3 * d,
        )?;
        r.linear(
            &mut block.attn.c_proj,
            &format!("{p}.attn.c_proj"),
            conv,
            d,
            d,
        )?;
        r.norm(&mut block.ln_2, &format!("{p}.ln_2"), d)?;
        r.linear(
            &mut block.mlp.c_fc,
            &format!("{p}.mlp.c_fc"),
            conv,
            d,
            inner,
        )?;
        r.linear(
            &mut block.mlp.c_proj,
            &format!("{p}.mlp.c_proj"),
            conv,
            inner,
            d,
        )?;
    }
    r.norm(&mut model.ln_f, "ln_f", d)?;
    if let Some(head) = model.lm_head.as_mut() {
        let w: Tensor<2> = r.unprefixed().get("lm_head.weight", [v, d])?;
        head.weight = Param::from_tensor(w.transpose());
    }
    Ok(model)
}

/// Writes `model` as an HF GPT-2 directory (`config.json` + `model.safetensors`, HF names,
/// f32), each file atomically. `transformers.GPT2LMHeadModel.from_pretrained(dir)` loads it.
pub fn save_hf_dir(model: &Gpt2, config: &Gpt2Config, dir: &Path) -> Result<()> {
    let mut w = HfWriter::new();
    let conv = WeightLayout::InOut;
    w.put("transformer.wte.weight", model.wte.weight.val())?;
    w.put("transformer.wpe.weight", model.wpe.weight.val())?;
    for (i, b) in model.h.iter().enumerate() {
        let p = format!("transformer.h.{i}");
        w.norm(&format!("{p}.ln_1"), &b.ln_1)?;
        w.linear(&format!("{p}.attn.c_attn"), &b.attn.c_attn, conv)?;
        w.linear(&format!("{p}.attn.c_proj"), &b.attn.c_proj, conv)?;
        w.norm(&format!("{p}.ln_2"), &b.ln_2)?;
        w.linear(&format!("{p}.mlp.c_fc"), &b.mlp.c_fc, conv)?;
        w.linear(&format!("{p}.mlp.c_proj"), &b.mlp.c_proj, conv)?;
    }
    w.norm("transformer.ln_f", &model.ln_f)?;
    if let Some(head) = &model.lm_head {
        w.put("lm_head.weight", head.weight.val().transpose())?;
    }
    w.write(dir, config)
}
