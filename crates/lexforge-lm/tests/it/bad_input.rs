//! Bad input gets a typed error, no panic, and no damaged run directory.

use lexforge_core::{CancelToken, Device, NoopSink, verify_run_dir};
use lexforge_lm::{Gpt2Spec, LanguageModel, LmError, ModelConfig, resume};
use lexforge_nn::generate::GenerateConfig;
use lexforge_tokenizers::{Tokenizer, TokenizerConfig, TokenizerMethod, TokenizerTrainRequest};

use crate::{cpu, gpt2_config, small_books, train_in};

#[test]
fn a_head_count_that_does_not_divide_the_width_is_refused_before_anything_is_written() {
    let out = tempfile::tempdir().unwrap();
    let mut config = gpt2_config();
    config.model = ModelConfig::Gpt2(Gpt2Spec {
        n_embd: 50,
        n_head: 4,
        ..Gpt2Spec::default()
    });
    let err = train_in(&config, &out.path().join("bad"), &NoopSink).unwrap_err();
    assert!(
        matches!(&err, LmError::InvalidConfig { field, .. } if field == "model.n_embd"),
        "{err}"
    );
    assert!(!out.path().join("bad").exists());
}

#[test]
fn an_empty_validation_split_is_a_typed_error_and_leaves_no_run() {
    let out = tempfile::tempdir().unwrap();
    let corpus = out.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    // Many tiny documents: whichever go to validation hold far fewer tokens than a window.
    for i in 0..40 {
        std::fs::write(corpus.join(format!("short{i}.txt")), format!("note {i}.")).unwrap();
    }
    let mut config = gpt2_config();
    config.corpus.paths = vec![corpus.clone()];
    config.corpus.validation_fraction = 0.05;
    config.context = 64;
    let err = train_in(&config, &out.path().join("empty-val"), &NoopSink).unwrap_err();
    assert!(matches!(err, LmError::EmptyValidation { .. }), "{err}");
    assert!(
        !out.path().join("empty-val").exists(),
        "no half-made run is left"
    );
}

#[test]
fn model_level_misuse_is_typed() {
    let _g = crate::serial();
    let out = tempfile::tempdir().unwrap();
    let mut config = gpt2_config();
    config.train.max_steps = 4;
    config.train.warmup_steps = 1;
    config.train.eval_every = 2;
    config.train.checkpoint_every = 2;
    train_in(&config, &out.path().join("r"), &NoopSink).unwrap();
    let dir = out.path().join("r");
    let device = Device::flex();

    // A tokenizer of another size.
    let other = Tokenizer::train(
        &TokenizerConfig::new(TokenizerMethod::Bpe, 400),
        &TokenizerTrainRequest::from_paths(small_books()),
        &NoopSink,
    )
    .unwrap();
    let err = LanguageModel::load_with_tokenizer(&dir, other, &device).unwrap_err();
    assert!(
        matches!(
            err,
            LmError::VocabMismatch {
                tokenizer_vocab: 400,
                model_vocab: 600
            }
        ),
        "{err}"
    );

    // A prompt that fills the context (32 tokens).
    let lm = LanguageModel::load(&dir, &device).unwrap();
    let long = "word ".repeat(200);
    let err = lm.generate(&long, &GenerateConfig::default()).unwrap_err();
    assert_eq!(err.kind(), lexforge_core::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("context"), "{err}");

    // A damaged checkpoint: resume refuses it and the run's files stay intact.
    let weights = dir.join("checkpoints/step-000004/model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = resume(&dir, &cpu(), Some(8), &NoopSink, &CancelToken::new()).unwrap_err();
    assert!(
        matches!(
            err,
            LmError::Train(lexforge_train::TrainError::Checkpoint { .. })
        ),
        "{err}"
    );
    assert_eq!(err.kind(), lexforge_core::ErrorKind::Artifact);
    verify_run_dir(&dir).unwrap();
    LanguageModel::load(&dir, &device).unwrap();

    // A truncated final model is caught by the manifest before anything is loaded.
    let model = dir.join("model.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..100]).unwrap();
    let err = LanguageModel::load(&dir, &device).unwrap_err();
    assert_eq!(err.kind(), lexforge_core::ErrorKind::Artifact, "{err}");
}
