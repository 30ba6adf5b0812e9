//! HF BERT-family weights in and out: `config.json` + `model.safetensors`.
//!
//! Remap table (checkpoint name, after an optional `bert.` / `roberta.` / any prefix ending in
//! `embeddings.word_embeddings.weight`, → module path; `d` = hidden size, `f` = intermediate):
//!
//! | HF name | lexforge | note |
//! | --- | --- | --- |
//! | `embeddings.word_embeddings.weight` `[vocab, d]` | `embeddings.word.weight` | |
//! | `embeddings.position_embeddings.weight` `[positions, d]` | `embeddings.position.weight` | |
//! | `embeddings.token_type_embeddings.weight` `[types, d]` | `embeddings.token_type.weight` | |
//! | `embeddings.LayerNorm.{weight,bias}` | `embeddings.norm.{gamma,beta}` | old `gamma`/`beta` names accepted |
//! | `encoder.layer.{i}.attention.self.{query,key,value}.*` `[d, d]` | `layers[i].attention.{query,key,value}` | torch `Linear` `[out, in]`: transposed |
//! | `encoder.layer.{i}.attention.output.dense.*` `[d, d]` | `layers[i].attention.output` | transposed |
//! | `encoder.layer.{i}.attention.output.LayerNorm.*` | `layers[i].attention.norm` | |
//! | `encoder.layer.{i}.intermediate.dense.*` `[f, d]` | `layers[i].intermediate` | transposed |
//! | `encoder.layer.{i}.output.dense.*` `[d, f]` | `layers[i].output` | transposed |
//! | `encoder.layer.{i}.output.LayerNorm.*` | `layers[i].norm` | |
//!
//! Not read: `pooler.*` (sentence embeddings pool the hidden states instead; [`save_hf_dir_from`]
//! copies it from the base checkpoint so that exported models keep it), the
//! `embeddings.position_ids` buffer, task heads.

use std::path::Path;

use burn::module::Param;
use burn::tensor::Device;

use super::config::BertConfig;
use super::model::BertModel;
use crate::error::{NnError, Result};
use crate::hf::{self, CONFIG_FILE, HfReader, HfWriter, WEIGHTS_FILE, WeightLayout};

const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

/// Loads a BERT-family directory (`config.json` + `model.safetensors`) onto `device`.
///
/// # Errors
/// Missing or unreadable files ([`lexforge_core::Error::Io`] naming the path), an unsupported
/// config ([`NnError::InvalidConfig`]), or weights that do not match it
/// ([`NnError::MissingTensor`], [`NnError::ShapeMismatch`], [`NnError::Weights`]).
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<(BertConfig, BertModel)> {
    let config: BertConfig = hf::read_json(&dir.join(CONFIG_FILE), "read model config")?;
    config.validate()?;
    let path = dir.join(WEIGHTS_FILE);
    let bytes =
        std::fs::read(&path).map_err(|e| lexforge_core::Error::io("read weights", &path, e))?;
    let model = load_weights(&config, &path, &bytes, device)?;
    Ok((config, model))
}

/// Builds an encoder for `config` from safetensors `bytes` (read from `path`, named in errors).
pub fn load_weights(
    config: &BertConfig,
    path: &Path,
    bytes: &[u8],
    device: &Device,
) -> Result<BertModel> {
    let st = hf::parse(path, bytes)?;
    let names = st.names();
    let prefix = names
        .iter()
        .filter_map(|n| n.strip_suffix(WORD_EMBEDDINGS))
        .min_by_key(|p| p.len())
        .ok_or_else(|| NnError::MissingTensor {
            path: path.to_path_buf(),
            name: WORD_EMBEDDINGS.to_owned(),
        })?
        .to_owned();
    let r = HfReader::new(path, &st, &prefix, device);
    let mut model = BertModel::new(config, device)?;
    let (d, f) = (config.hidden_size, config.intermediate_size);
    let lin = WeightLayout::OutIn;
    let e = &mut model.embeddings;
    e.word.weight = Param::from_tensor(r.get(WORD_EMBEDDINGS, [config.vocab_size, d])?);
    e.position.weight = Param::from_tensor(r.get(
        "embeddings.position_embeddings.weight",
        [config.max_position_embeddings, d],
    )?);
    e.token_type.weight = Param::from_tensor(r.get(
        "embeddings.token_type_embeddings.weight",
        [config.type_vocab_size, d],
    )?);
    r.norm(&mut e.norm, "embeddings.LayerNorm", d)?;
    for (i, layer) in model.layers.iter_mut().enumerate() {
        let p = format!("encoder.layer.{i}");
        let a = &mut layer.attention;
        r.linear(
            &mut a.query,
            &format!("{p}.attention.self.query"),
            lin,
            d,
            d,
        )?;
        r.linear(&mut a.key, &format!("{p}.attention.self.key"), lin, d, d)?;
        r.linear(
            &mut a.value,
            &format!("{p}.attention.self.value"),
            lin,
            d,
            d,
        )?;
        r.linear(
            &mut a.output,
            &format!("{p}.attention.output.dense"),
            lin,
            d,
            d,
        )?;
        r.norm(&mut a.norm, &format!("{p}.attention.output.LayerNorm"), d)?;
        r.linear(
            &mut layer.intermediate,
            &format!("{p}.intermediate.dense"),
            lin,
            d,
            f,
        )?;
        r.linear(&mut layer.output, &format!("{p}.output.dense"), lin, f, d)?;
        r.norm(&mut layer.norm, &format!("{p}.output.LayerNorm"), d)?;
    }
    Ok(model)
}

/// Writes `model` as an HF directory (`config.json` + `model.safetensors` with the names of a
/// bare `BertModel` / `RobertaModel`, f32), each file atomically; `transformers.AutoModel` and
/// [`load_hf_dir`] read it back.
pub fn save_hf_dir(model: &BertModel, config: &BertConfig, dir: &Path) -> Result<()> {
    save_hf_dir_from(model, config, None, dir)
}

/// [`save_hf_dir`], keeping the pooler (`pooler.*`, which lexforge neither reads nor trains)
/// of the checkpoint `base` was loaded from, so that `transformers.AutoModel` finds every
/// weight the base had. `base` is that model's directory; without one, or when its weights
/// have no pooler, nothing is added.
///
/// # Errors
/// As [`save_hf_dir`]; reading `base`'s weights.
pub fn save_hf_dir_from(
    model: &BertModel,
    config: &BertConfig,
    base: Option<&Path>,
    dir: &Path,
) -> Result<()> {
    let mut w = HfWriter::new();
    if let Some(base) = base.map(|b| b.join(WEIGHTS_FILE)).filter(|f| f.is_file()) {
        w.copy_from(&base, "pooler.")?;
    }
    let lin = WeightLayout::OutIn;
    let e = &model.embeddings;
    w.put(WORD_EMBEDDINGS, e.word.weight.val())?;
    w.put(
        "embeddings.position_embeddings.weight",
        e.position.weight.val(),
    )?;
    w.put(
        "embeddings.token_type_embeddings.weight",
        e.token_type.weight.val(),
    )?;
    w.norm("embeddings.LayerNorm", &e.norm)?;
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("encoder.layer.{i}");
        let a = &layer.attention;
        w.linear(&format!("{p}.attention.self.query"), &a.query, lin)?;
        w.linear(&format!("{p}.attention.self.key"), &a.key, lin)?;
        w.linear(&format!("{p}.attention.self.value"), &a.value, lin)?;
        w.linear(&format!("{p}.attention.output.dense"), &a.output, lin)?;
        w.norm(&format!("{p}.attention.output.LayerNorm"), &a.norm)?;
        w.linear(&format!("{p}.intermediate.dense"), &layer.intermediate, lin)?;
        w.linear(&format!("{p}.output.dense"), &layer.output, lin)?;
        w.norm(&format!("{p}.output.LayerNorm"), &layer.norm)?;
    }
    w.write(dir, config)
}
