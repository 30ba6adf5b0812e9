//! The adapter directory on disk: [`ADAPTERS_FILE`] and [`ADAPTER_CONFIG_FILE`] written
//! apart from the base ([`save_adapters`]), and read back onto a base after every check
//! ([`load_adapters`]).

use std::collections::HashMap;
use std::path::Path;

use burn::module::{LoraAdapter, Module, Param, Reparameterizer};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::attach::{check_adapters, ensure_unadapted};
use super::config::{BaseFingerprint, LoraConfig, slots};
use crate::error::{NnError, Result};
use crate::gpt2::Gpt2;
use crate::hf::{self, HfReader, HfWriter};

/// The adapter weights of an adapter directory.
pub const ADAPTERS_FILE: &str = "adapters.safetensors";
/// The adapter config of an adapter directory.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// The [`AdapterConfig::format`] this build writes and reads.
pub const ADAPTER_FORMAT: u32 = 1;
/// Key of the adapter config (compact JSON) in the safetensors header metadata.
const METADATA_KEY: &str = "lexforge.adapter_config";

/// The content of `adapter_config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    /// File format version ([`ADAPTER_FORMAT`]).
    pub format: u32,
    /// The LoRA hyper-parameters.
    pub lora: LoraConfig,
    /// The base the adapters were trained on.
    pub base: BaseFingerprint,
}

/// Writes the adapters of `model` (built with `config`) into `dir` — [`ADAPTERS_FILE`] then
/// [`ADAPTER_CONFIG_FILE`], each atomically; the base weights are not written.
///
/// # Errors
/// [`NnError::Adapter`] if the model's adapters are not those of `config` (a target without
/// adapter, another rank or scale); I/O errors naming the file.
pub fn save_adapters(model: &Gpt2, config: &LoraConfig, dir: &Path) -> Result<()> {
    config.validate()?;
    check_adapters(model, config)?;
    let file = AdapterConfig {
        format: ADAPTER_FORMAT,
        lora: config.clone(),
        base: BaseFingerprint::of(model),
    };
    let mut w = HfWriter::new();
    for (i, t) in slots(model.h.len()) {
        if let Some(adapter) = t.linear(&model.h[i]).weight.adapter() {
            w.put(format!("{}.lora_a", t.hf_name(i)), adapter.a.val())?;
            w.put(format!("{}.lora_b", t.hf_name(i)), adapter.b.val())?;
        }
    }
    let serialize_error = |source| lexforge_core::Error::Serialize {
        what: "adapter config",
        source,
    };
    let compact = serde_json::to_string(&file).map_err(serialize_error)?;
    let pretty = serde_json::to_vec_pretty(&file).map_err(serialize_error)?;
    let bytes = w.to_bytes(HashMap::from([(METADATA_KEY.to_owned(), compact)]))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| lexforge_core::Error::io("create directory", dir, e))?;
    lexforge_core::atomic_write(&dir.join(ADAPTERS_FILE), &bytes)?;
    lexforge_core::atomic_write(&dir.join(ADAPTER_CONFIG_FILE), &pretty)?;
    Ok(())
}

/// Reads the adapter directory `dir` and attaches its adapters to `model` (a base without
/// adapters, e.g. fresh from [`load_hf_dir`]), which is frozen as by
/// [`apply_lora`]: on an autodiff device, training resumes on the loaded factors. Returns the
/// adapters' config and the adapted model; its logits are bit-identical to those of the model
/// the adapters were saved from (same base weights, evaluated on the same backend).
///
/// Everything is checked before the model is touched.
///
/// # Errors
/// Each naming the file: I/O errors (a missing file: not found); `lexforge_core::Error::Json`
/// for a config that is not an [`AdapterConfig`] (foreign or damaged);
/// `lexforge_core::Error::SchemaVersion` for another format; [`NnError::InvalidAdapterConfig`];
/// [`NnError::AdapterBaseMismatch`] for adapters of a base of other dimensions;
/// [`NnError::Weights`] for a truncated or non-safetensors file, or one written with another
/// config; [`NnError::MissingTensor`], [`NnError::ShapeMismatch`],
/// [`NnError::UnexpectedTensor`]. [`NnError::Adapter`] if `model` already has adapters.
///
/// [`load_hf_dir`]: crate::gpt2::load_hf_dir
/// [`apply_lora`]: crate::gpt2::apply_lora
pub fn load_adapters(model: Gpt2, dir: &Path) -> Result<(LoraConfig, Gpt2)> {
    let config_path = dir.join(ADAPTER_CONFIG_FILE);
    let file: AdapterConfig = hf::read_json(&config_path, "read adapter config")?;
    if file.format != ADAPTER_FORMAT {
        return Err(lexforge_core::Error::SchemaVersion {
            path: config_path,
            found: file.format,
            supported: ADAPTER_FORMAT,
        }
        .into());
    }
    let base = BaseFingerprint::of(&model);
    for ((field, adapters), (_, got)) in file.base.fields().into_iter().zip(base.fields()) {
        if adapters != got {
            return Err(NnError::AdapterBaseMismatch {
                path: config_path,
                field,
                adapters,
                model: got,
            });
        }
    }
    match file.lora.validate_for(&base) {
        Ok(()) => {}
        Err(NnError::InvalidConfig {
            field,
            value,
            reason,
        }) => {
            return Err(NnError::InvalidAdapterConfig {
                path: config_path,
                field,
                value,
                reason,
            });
        }
        Err(e) => return Err(e),
    }
    ensure_unadapted(&model)?;

    let path = dir.join(ADAPTERS_FILE);
    let bytes =
        std::fs::read(&path).map_err(|e| lexforge_core::Error::io("read adapters", &path, e))?;
    let st = hf::parse(&path, &bytes)?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| NnError::Weights {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if let Some(json) = header.metadata().as_ref().and_then(|m| m.get(METADATA_KEY)) {
        let written: Option<AdapterConfig> = serde_json::from_str(json).ok();
        if written.as_ref() != Some(&file) {
            return Err(NnError::Weights {
                path,
                reason: format!(
                    "written with another {ADAPTER_CONFIG_FILE} than the one beside it \
                     (an interrupted save, or files of two adapters mixed)"
                ),
            });
        }
    }
    let device = model.wte.weight.lazy_device();
    let reader = HfReader::new(&path, &st, "", &device);
    let mut factors = HashMap::new();
    let mut expected_names = Vec::new();
    for (i, t) in slots(base.n_layer).filter(|(_, t)| file.lora.targets.contains(t)) {
        let [d_in, d_out] = t.dims(&base);
        let (name_a, name_b) = (
            format!("{}.lora_a", t.hf_name(i)),
            format!("{}.lora_b", t.hf_name(i)),
        );
        let a = reader.get_data(&name_a, [d_in, file.lora.rank])?;
        let b = reader.get_data(&name_b, [file.lora.rank, d_out])?;
        factors.insert(t.module_path(i), (a, b));
        expected_names.extend([name_a, name_b]);
    }
    if let Some(name) = st
        .names()
        .into_iter()
        .find(|n| !expected_names.iter().any(|e| e == *n))
    {
        return Err(NnError::UnexpectedTensor {
            path,
            name: (*name).to_owned(),
        });
    }

    let model = model.apply_reparameterization(LoadedLora {
        factors,
        scale: file.lora.scale(),
    });
    check_adapters(&model, &file.lora)?;
    tracing::debug!(path = %path.display(), rank = file.lora.rank, "LoRA adapters loaded");
    Ok((file.lora, model))
}

/// A [`Reparameterizer`] attaching factors read from a file, freezing every parameter as
/// burn's [`Lora`] does.
struct LoadedLora {
    /// Module path of the weight → `(a [d_in, rank], b [rank, d_out])`.
    factors: HashMap<String, (TensorData, TensorData)>,
    scale: f64,
}

impl Reparameterizer for LoadedLora {
    type Reparam = LoraAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<LoraAdapter>) {
        let device = param.lazy_device();
        let base = param.set_require_grad(false);
        match self.factors.remove(path) {
            Some((a, b)) if D == 2 => {
                // `from_data` places the factors as parameters (persistent allocations, gradients
                // required on an autodiff device), as burn's `Lora` builds its own.
                let adapter = LoraAdapter {
                    a: Param::from_data(a, &device),
                    b: Param::from_data(b, &device),
                    scale: self.scale,
                };
                (base, Some(adapter))
            }
            _ => (base, None),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use burn::tensor::Device;

    use super::super::tests::{VOCAB, logits, tiny, train};
    use super::*;
    use crate::error::AdapterProblem;
    use crate::gpt2::{Gpt2Config, LoraTarget, apply_lora, load_hf_dir, save_hf_dir};

    /// Train on the autodiff device, save the adapters alone, load them onto a freshly loaded
    /// base: bit-identical logits; the directory holds the two files only.
    #[test]
    fn adapters_round_trip_onto_a_fresh_base_bit_identically() {
        let plain = Device::flex();
        let base_dir = tempfile::tempdir().unwrap();
        let config = tiny();
        save_hf_dir(
            &Gpt2::new(&config, &plain).unwrap(),
            &config,
            base_dir.path(),
        )
        .unwrap();

        let device = Device::flex().autodiff();
        device.seed(3);
        let (_, base) = load_hf_dir(base_dir.path(), &device).unwrap();
        let lora = LoraConfig::new(4, 8.0).with_mlp();
        let (trained, _) = train(apply_lora(base, &lora).unwrap(), &device, 2);

        let dir = tempfile::tempdir().unwrap();
        let adapter_dir = dir.path().join("adapter");
        save_adapters(&trained, &lora, &adapter_dir).unwrap();
        let mut files: Vec<String> = std::fs::read_dir(&adapter_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, [ADAPTER_CONFIG_FILE, ADAPTERS_FILE]);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(adapter_dir.join(ADAPTER_CONFIG_FILE)).unwrap())
                .unwrap();
        assert_eq!(json["format"], 1);
        assert_eq!(json["lora"]["rank"], 4);
        assert_eq!(json["lora"]["alpha"], 8.0);
        assert_eq!(json["lora"]["targets"].as_array().unwrap().len(), 4);
        assert_eq!(json["base"]["n_layer"], 2);
        assert_eq!(json["base"]["n_embd"], 32);
        assert_eq!(json["base"]["vocab_size"], 64);
        let bytes = std::fs::read(adapter_dir.join(ADAPTERS_FILE)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), 2 * 2 * 4);
        let a = st.tensor("transformer.h.1.mlp.c_fc.weight.lora_a").unwrap();
        assert_eq!(a.shape(), [32, 4]);
        let b = st.tensor("transformer.h.1.mlp.c_fc.weight.lora_b").unwrap();
        assert_eq!(b.shape(), [4, 128]);
        assert!(bytes.len() < 40_000, "base weights are not in the file");

        let (_, fresh) = load_hf_dir(base_dir.path(), &plain).unwrap();
        let (loaded_config, loaded) = load_adapters(fresh, &adapter_dir).unwrap();
        assert_eq!(loaded_config, lora);
        let expected = logits(&trained.valid(), &plain);
        assert_eq!(logits(&loaded, &plain), expected, "bit-identical logits");

        // Loaded onto an autodiff base, training resumes on the factors only.
        let (_, fresh) = load_hf_dir(base_dir.path(), &device).unwrap();
        let (_, resumed) = load_adapters(fresh, &adapter_dir).unwrap();
        let (_, n_grads) = train(resumed, &device, 1);
        assert_eq!(n_grads, 16);
    }

    /// Mismatched, truncated and foreign adapter directories are typed errors naming the file.
    #[test]
    fn bad_adapter_directories_are_typed_errors_naming_the_file() {
        let device = Device::flex();
        let lora = LoraConfig::new(4, 8.0);
        let model = apply_lora(Gpt2::new(&tiny(), &device).unwrap(), &lora).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("adapter");
        save_adapters(&model, &lora, &dir).unwrap();
        let weights = dir.join(ADAPTERS_FILE);
        let config_path = dir.join(ADAPTER_CONFIG_FILE);
        let good_weights = std::fs::read(&weights).unwrap();
        let good_config = std::fs::read(&config_path).unwrap();
        let fresh = || Gpt2::new(&tiny(), &device).unwrap();
        let names = |e: &NnError, file: &str| {
            assert!(e.to_string().contains(file), "{e} does not name {file}");
        };

        // A base of other dimensions: the first differing field, naming the config.
        for (other, field) in [
            (Gpt2Config::new(VOCAB, 16, 64, 2, 4), "n_embd"),
            (Gpt2Config::new(VOCAB, 16, 32, 3, 4), "n_layer"),
            (Gpt2Config::new(50, 16, 32, 2, 4), "vocab_size"),
        ] {
            let e = load_adapters(Gpt2::new(&other, &device).unwrap(), &dir).unwrap_err();
            assert!(
                matches!(e, NnError::AdapterBaseMismatch { field: f, .. } if f == field),
                "{e}"
            );
            names(&e, ADAPTER_CONFIG_FILE);
        }

        // Truncated adapters.
        std::fs::write(&weights, &good_weights[..good_weights.len() / 2]).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(matches!(e, NnError::Weights { .. }), "{e}");
        names(&e, ADAPTERS_FILE);

        // Not safetensors at all.
        std::fs::write(&weights, b"not a safetensors file").unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(matches!(e, NnError::Weights { .. }), "{e}");
        names(&e, ADAPTERS_FILE);

        // A foreign safetensors file (the base model's weights).
        save_hf_dir(&fresh(), &tiny(), tmp.path()).unwrap();
        std::fs::copy(tmp.path().join("model.safetensors"), &weights).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(
            matches!(e, NnError::MissingTensor { ref name, .. }
                if name == "transformer.h.0.attn.c_attn.weight.lora_a"),
            "{e}"
        );
        names(&e, ADAPTERS_FILE);

        // Adapters of another rank written without metadata: a shape error; extra tensors.
        let mut w = HfWriter::new();
        let t = |dims: [usize; 2]| Tensor::<2>::zeros(dims, &device);
        for i in 0..2 {
            for (target, [d_in, d_out]) in [
                (LoraTarget::AttnQkv, [32, 96]),
                (LoraTarget::AttnProj, [32, 32]),
            ] {
                w.put(format!("{}.lora_a", target.hf_name(i)), t([d_in, 2]))
                    .unwrap();
                w.put(format!("{}.lora_b", target.hf_name(i)), t([2, d_out]))
                    .unwrap();
            }
        }
        std::fs::write(&weights, w.to_bytes(HashMap::new()).unwrap()).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(
            matches!(e, NnError::ShapeMismatch { ref expected, ref got, .. }
                if expected == &[32, 4] && got == &[32, 2]),
            "{e}"
        );
        names(&e, ADAPTERS_FILE);
        let mut w = HfWriter::new();
        for i in 0..2 {
            for (target, [d_in, d_out]) in [
                (LoraTarget::AttnQkv, [32, 96]),
                (LoraTarget::AttnProj, [32, 32]),
                (LoraTarget::MlpFc, [32, 128]),
            ] {
                w.put(format!("{}.lora_a", target.hf_name(i)), t([d_in, 4]))
                    .unwrap();
                w.put(format!("{}.lora_b", target.hf_name(i)), t([4, d_out]))
                    .unwrap();
            }
        }
        std::fs::write(&weights, w.to_bytes(HashMap::new()).unwrap()).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(matches!(e, NnError::UnexpectedTensor { .. }), "{e}");
        names(&e, ADAPTERS_FILE);

        // A config edited after the save: the header's copy disagrees.
        std::fs::write(&weights, &good_weights).unwrap();
        let mut edited: AdapterConfig = serde_json::from_slice(&good_config).unwrap();
        edited.lora.alpha = 4.0;
        std::fs::write(&config_path, serde_json::to_vec(&edited).unwrap()).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(matches!(e, NnError::Weights { .. }), "{e}");
        names(&e, ADAPTERS_FILE);

        // Impossible values, another format, a foreign (PEFT) config, no config at all.
        edited.lora.alpha = -1.0;
        std::fs::write(&config_path, serde_json::to_vec(&edited).unwrap()).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(
            matches!(e, NnError::InvalidAdapterConfig { field: "alpha", .. }),
            "{e}"
        );
        names(&e, ADAPTER_CONFIG_FILE);
        edited.lora.alpha = 8.0;
        edited.format = 2;
        std::fs::write(&config_path, serde_json::to_vec(&edited).unwrap()).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(
            matches!(
                e,
                NnError::Core(lexforge_core::Error::SchemaVersion { found: 2, .. })
            ),
            "{e}"
        );
        names(&e, ADAPTER_CONFIG_FILE);
        std::fs::write(
            &config_path,
            br#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["c_attn"]}"#,
        )
        .unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert!(
            matches!(e, NnError::Core(lexforge_core::Error::Json { .. })),
            "{e}"
        );
        names(&e, ADAPTER_CONFIG_FILE);
        std::fs::remove_file(&config_path).unwrap();
        let e = load_adapters(fresh(), &dir).unwrap_err();
        assert_eq!(e.kind(), lexforge_core::ErrorKind::NotFound, "{e}");
        names(&e, ADAPTER_CONFIG_FILE);

        // In-memory misuse: adapters twice; saving under another config.
        std::fs::write(&config_path, &good_config).unwrap();
        let e = apply_lora(model.clone(), &lora).unwrap_err();
        assert!(
            matches!(
                e,
                NnError::Adapter {
                    problem: AdapterProblem::AlreadyAdapted,
                    ..
                }
            ),
            "{e}"
        );
        let e = load_adapters(model.clone(), &dir).unwrap_err();
        assert!(matches!(e, NnError::Adapter { .. }), "{e}");
        let e = save_adapters(&model, &lora.clone().with_mlp(), &dir).unwrap_err();
        assert!(
            matches!(
                e,
                NnError::Adapter { ref param, problem: AdapterProblem::Missing }
                    if param == "h.0.mlp.c_fc.weight"
            ),
            "{e}"
        );
        let e = save_adapters(&model, &LoraConfig::new(4, 4.0), &dir).unwrap_err();
        assert!(
            matches!(
                e,
                NnError::Adapter {
                    problem: AdapterProblem::Scale { .. },
                    ..
                }
            ),
            "{e}"
        );
        // The failed saves left the directory as it was.
        assert_eq!(std::fs::read(&weights).unwrap(), good_weights);
        assert!(load_adapters(fresh(), &dir).is_ok());
    }
}
