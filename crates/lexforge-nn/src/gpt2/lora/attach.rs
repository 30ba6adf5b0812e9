//! Adapters on a model in memory: attach them and freeze the rest ([`apply_lora`]), list them
//! ([`adapted_weights`]), check them against a config, and fold them into the base
//! ([`merge_adapters`]).

use burn::module::{Lora, Module, ParamGroup};

use super::config::{BaseFingerprint, LoraConfig, slots};
use crate::error::{AdapterProblem, NnError, Result};
use crate::gpt2::Gpt2;

/// Attaches LoRA adapters of `config` to `model` and freezes everything else: afterwards only
/// the factors `a` (`[d_in, rank]`, N(0, 1/rank), drawn from the device's RNG) and `b`
/// (`[rank, d_out]`, zeros) require gradients, and the model computes exactly what it did
/// before (`b = 0`).
///
/// Dropout layers keep their settings. Apply it on the training (autodiff) device, or on a
/// plain device followed by `Module::train` — the frozen state carries over either way.
///
/// # Errors
/// [`NnError::InvalidConfig`] for a bad config or a rank above a target's smallest dimension;
/// [`NnError::Adapter`] with [`AdapterProblem::AlreadyAdapted`] if a weight already has one.
pub fn apply_lora(model: Gpt2, config: &LoraConfig) -> Result<Gpt2> {
    config.validate_for(&BaseFingerprint::of(&model))?;
    ensure_unadapted(&model)?;
    let paths: Vec<String> = slots(model.h.len())
        .filter(|(_, t)| config.targets.contains(t))
        .map(|(i, t)| t.module_path(i))
        .collect();
    let lora = Lora::new(config.rank, config.alpha).set_param_group(ParamGroup::from_paths(paths));
    let model = model.apply_lora(lora);
    check_adapters(&model, config)?;
    tracing::debug!(
        rank = config.rank,
        alpha = config.alpha,
        adapters = adapted_weights(&model).len(),
        "LoRA adapters attached"
    );
    Ok(model)
}

/// The module paths (`h.{i}.attn.c_attn.weight`) of the weights of `model` that carry an
/// adapter, in block order.
pub fn adapted_weights(model: &Gpt2) -> Vec<String> {
    slots(model.h.len())
        .filter(|&(i, t)| t.linear(&model.h[i]).weight.adapter().is_some())
        .map(|(i, t)| t.module_path(i))
        .collect()
}

pub(super) fn ensure_unadapted(model: &Gpt2) -> Result<()> {
    match adapted_weights(model).into_iter().next() {
        Some(param) => Err(NnError::Adapter {
            param,
            problem: AdapterProblem::AlreadyAdapted,
        }),
        None => Ok(()),
    }
}

/// Checks that exactly the targets of `config` carry adapters of its rank and scale.
pub(super) fn check_adapters(model: &Gpt2, config: &LoraConfig) -> Result<()> {
    for (i, t) in slots(model.h.len()) {
        let adapter = t.linear(&model.h[i]).weight.adapter();
        let problem = match (config.targets.contains(&t), adapter) {
            (true, None) => Some(AdapterProblem::Missing),
            (false, Some(_)) => Some(AdapterProblem::NotTargeted),
            (false, None) => None,
            (true, Some(a)) => {
                let rank = a.a.val().dims()[1];
                if rank != config.rank {
                    Some(AdapterProblem::Rank {
                        expected: config.rank,
                        got: rank,
                    })
                } else if a.scale != config.scale() {
                    Some(AdapterProblem::Scale {
                        expected: config.scale(),
                        got: a.scale,
                    })
                } else {
                    None
                }
            }
        };
        if let Some(problem) = problem {
            return Err(NnError::Adapter {
                param: t.module_path(i),
                problem,
            });
        }
    }
    Ok(())
}

/// Folds every adapter into its weight (`W + (alpha / rank) · a @ b`, computed once) and drops
/// it: a plain GPT-2 whose logits equal the adapted model's (up to float rounding), with every
/// parameter trainable again as in a model from [`Gpt2::new`]. Save it with
/// [`save_hf_dir`](crate::gpt2::save_hf_dir) to ship a standalone fine-tuned model.
pub fn merge_adapters(model: Gpt2) -> Gpt2 {
    model.materialize().set_require_grad(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use burn::module::Module;
    use burn::tensor::Device;

    use super::super::tests::{VOCAB, logits, max_abs_diff, params, tiny, train, values};
    use super::*;
    use crate::generate::{CausalLm, GenerateConfig, generate};
    use crate::gpt2::{load_hf_dir, save_hf_dir};

    /// One AdamW step trains the factors only: every base parameter is bit-identical, `b`
    /// moved, the output moved. Gradients exist for exactly the factors.
    #[test]
    fn only_adapter_factors_train() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let base = Gpt2::new(&tiny(), &device).unwrap();
        let before = logits(&base, &device);
        let model = apply_lora(base, &LoraConfig::new(4, 8.0)).unwrap();
        assert_eq!(
            adapted_weights(&model),
            [
                "h.0.attn.c_attn.weight",
                "h.0.attn.c_proj.weight",
                "h.1.attn.c_attn.weight",
                "h.1.attn.c_proj.weight"
            ]
        );
        // b = 0: the adapted model computes exactly what the base did.
        assert_eq!(logits(&model, &device), before);
        let params_before = params(&model);
        let trainable: Vec<&str> = params_before
            .iter()
            .filter(|p| p.2)
            .map(|p| p.0.as_str())
            .collect();
        assert_eq!(trainable.len(), 8, "{trainable:?}");
        assert!(
            trainable
                .iter()
                .all(|p| p.ends_with(".weight.lora.a") || p.ends_with(".weight.lora.b"))
        );

        let (model, n_grads) = train(model, &device, 1);
        assert_eq!(n_grads, 8, "gradients for the 8 factors only");
        let params_after = params(&model);
        assert_eq!(params_before.len(), params_after.len());
        for ((path, a, _), (_, b, _)) in params_before.iter().zip(&params_after) {
            if path.contains(".lora.") {
                if path.ends_with(".lora.b") {
                    assert_ne!(a, b, "{path} did not move");
                }
            } else {
                assert_eq!(a, b, "{path} changed");
            }
        }
        let after = logits(&model, &device);
        assert!(max_abs_diff(&before, &after) > 1e-4);
    }

    /// What burn's records and burn-store see of an adapted model: the base unmerged at
    /// `….weight`, the factors at `….weight.lora.{a,b}`, and no scale.
    #[test]
    fn records_and_burn_store_hold_unmerged_base_and_factors() {
        use burn::store::{ModuleSnapshot, SafetensorsStore};
        let device = Device::flex().autodiff();
        device.seed(2);
        let base = Gpt2::new(&tiny(), &device).unwrap();
        let base_params = base.num_params();
        let (model, _) = train(
            apply_lora(base, &LoraConfig::new(4, 8.0)).unwrap(),
            &device,
            1,
        );
        // 2 layers × (c_attn: 32·4 + 4·96, c_proj: 32·4 + 4·32).
        assert_eq!(
            model.num_params(),
            base_params + 2 * (32 * 4 + 4 * 96 + 32 * 4 + 4 * 32)
        );

        let mut store = SafetensorsStore::from_bytes(None);
        model.save_into(&mut store).unwrap();
        let bytes = store.get_bytes().unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let names = st.names();
        for n in [
            "h.0.attn.c_attn.weight",
            "h.0.attn.c_attn.weight.lora.a",
            "h.0.attn.c_attn.weight.lora.b",
        ] {
            assert!(names.contains(&n), "{n} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("mlp.c_fc.weight.lora")));
        let stored = st.tensor("h.0.attn.c_attn.weight").unwrap();
        let stored: Vec<f32> = stored
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let w = &model.h[0].attn.c_attn.weight;
        assert_eq!(stored, values(w.base()), "the base is stored unmerged");
        assert_ne!(stored, values(w.val()));

        // A record round-trips onto a model adapted with the same config.
        let target = apply_lora(
            Gpt2::new(&tiny(), &device).unwrap(),
            &LoraConfig::new(4, 8.0),
        )
        .unwrap();
        let loaded = target.load_record(model.clone().into_record());
        assert_eq!(logits(&loaded, &device), logits(&model, &device));
    }

    #[test]
    fn merged_model_matches_the_adapted_one() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let base = Gpt2::new(&tiny(), &device).unwrap();
        let base_params = base.num_params();
        let (adapted, _) = train(
            apply_lora(base, &LoraConfig::new(4, 8.0).with_mlp()).unwrap(),
            &device,
            2,
        );
        let merged = merge_adapters(adapted.clone());
        assert!(adapted_weights(&merged).is_empty());
        assert_eq!(merged.num_params(), base_params);
        let diff = max_abs_diff(&logits(&adapted, &device), &logits(&merged, &device));
        assert!(diff < 1e-5, "{diff}");
        // Plain again: everything trains.
        let (_, n_grads) = train(merged.clone(), &device, 1);
        assert_eq!(n_grads, base_params_count(&merged));

        // save_hf_dir of an adapted model writes the merged weights.
        let plain = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        save_hf_dir(&adapted, &tiny(), dir.path()).unwrap();
        let (_, reloaded) = load_hf_dir(dir.path(), &plain).unwrap();
        let diff = max_abs_diff(&logits(&reloaded, &plain), &logits(&merged.valid(), &plain));
        assert!(diff < 1e-5, "{diff}");
    }

    fn base_params_count(model: &Gpt2) -> usize {
        params(model).len()
    }

    /// The adapted model generates through `CausalLm`, survives `valid()`, `fork()` and
    /// `to_device()`, and keeps training the factors only after a fork.
    #[test]
    fn adapted_model_generates_and_survives_valid_fork_and_to_device() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let (model, _) = train(
            apply_lora(
                Gpt2::new(&tiny(), &device).unwrap(),
                &LoraConfig::new(4, 8.0),
            )
            .unwrap(),
            &device,
            1,
        );
        let plain = Device::flex();
        let inference = model.valid();
        assert_eq!(adapted_weights(&inference).len(), 4);
        let diff = max_abs_diff(&logits(&model, &device), &logits(&inference, &plain));
        assert!(
            diff < 1e-5,
            "training and inference attention agree: {diff}"
        );

        let config = GenerateConfig {
            max_new_tokens: 5,
            ..GenerateConfig::default()
        };
        let decode = |ids: &[u32]| format!("{ids:?}");
        let adapted = generate(&inference, &[1, 2, 3], &config, &decode).unwrap();
        let merged = generate(
            &merge_adapters(inference.clone()),
            &[1, 2, 3],
            &config,
            &decode,
        )
        .unwrap();
        assert_eq!(adapted[0].tokens_generated, 5);
        assert_eq!(
            adapted, merged,
            "greedy decoding agrees with the merged model"
        );
        let lp = inference.log_probs(&[1, 2, 3, 4]).unwrap();
        assert_eq!((lp.len(), lp[0].len()), (4, VOCAB));

        let moved = inference.clone().to_device(&plain);
        assert_eq!(adapted_weights(&moved).len(), 4);
        assert_eq!(logits(&moved, &plain), logits(&inference, &plain));

        let forked = model.fork(&device);
        assert_eq!(adapted_weights(&forked).len(), 4);
        let before = params(&forked);
        let (trained, n_grads) = train(forked, &device, 1);
        assert_eq!(n_grads, 8);
        for ((path, a, _), (_, b, _)) in before.iter().zip(&params(&trained)) {
            if !path.contains(".lora.") {
                assert_eq!(a, b, "{path} changed after a fork");
            }
        }
        // Back to training after valid(): the factors train, the bases stay frozen.
        let (_, n_grads) = train(trained.valid().train(), &device, 1);
        assert_eq!(n_grads, 8);
    }
}
