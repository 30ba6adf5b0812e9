use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use lexforge_core::{CancelToken, NoopSink};
use lexforge_data::{ChunkConfig, PairConfig, PrepareConfig, Split, SplitConfig, TopicConfig};
use lexforge_matcher::{
    HeadConfig, LossConfig, Matcher, MatcherError, MatcherTrainConfig, PreparedDataset,
    SearchOptions, TeacherConfig, ThresholdMetric,
};
use lexforge_train::TrainConfig;

/// Eight books of six authors, prepared into a small pair dataset.
fn dataset(dir: &Path) -> PathBuf {
    let books = [
        "jane_austen/emma.txt",
        "jane_austen/pride_and_prejudice.txt",
        "g_k_chesterton/the_ball_and_the_cross.txt",
        "g_k_chesterton/the_wisdom_of_father_brown.txt",
        "h_g_wells/the_time_machine.txt",
        "thomas_paine/common_sense.txt",
        "lewis_carroll/alices_adventures_in_wonderland.txt",
        "jane_austen/sense_and_sensibility.txt",
    ];
    let config = PrepareConfig {
        seed: 5,
        chunk: ChunkConfig {
            chunk_size: 3,
            overlap: 0,
            min_chars: 150,
            english_filter: true,
            max_chunks_per_book: Some(8),
        },
        topics: TopicConfig {
            k: 3,
            max_iterations: 30,
            ..TopicConfig::default()
        },
        splits: SplitConfig {
            validation_fraction: 0.25,
            test_fraction: 0.25,
        },
        pairs: PairConfig {
            pairs_per_book: 16,
            positive_fraction: 0.5,
            hard_negative_fraction: 0.5,
        },
        ..PrepareConfig::default()
    };
    crate::prepare_books(dir, &books, 96, &config).0
}

/// The real all-MiniLM-L6-v2 with only its top layer and the head training: a few steps are
/// enough to move it, and calibration has a meaningful score to fit.
fn config() -> MatcherTrainConfig {
    MatcherTrainConfig {
        base_model: crate::minilm(),
        head: HeadConfig {
            projection_dim: Some(384),
            style_features: true,
            pair_features: true,
            topics: Some(3),
            ..HeadConfig::default()
        },
        loss: LossConfig {
            adversary: 0.1,
            distill: 0.5,
            ..LossConfig::default()
        },
        teacher: TeacherConfig {
            max_seq_length: 96,
            frozen_layers: 6,
            train: TrainConfig {
                max_steps: 4,
                batch_size: 8,
                lr: 1e-4,
                warmup_steps: 1,
                eval_every: 2,
                eval_batches: Some(2),
                checkpoint_every: 2,
                ..TrainConfig::default()
            },
            ..TeacherConfig::default()
        },
        train: TrainConfig {
            max_steps: 6,
            batch_size: 8,
            lr: 1e-4,
            min_lr: 1e-5,
            warmup_steps: 1,
            eval_every: 3,
            eval_batches: Some(2),
            checkpoint_every: 3,
            log_every: 3,
            ..TrainConfig::default()
        },
        max_seq_length: 64,
        frozen_layers: 6,
        threshold_metric: ThresholdMetric::F1,
        eval_batch_size: 16,
        ..MatcherTrainConfig::default()
    }
}

#[test]
fn train_save_reload_calibrate_evaluate_search() {
    let _lock = crate::training_lock();
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let data = PreparedDataset::open(&ds).unwrap();
    let out = dir.path().join("matcher");
    let device = Device::flex();
    let report = lexforge_matcher::train(
        &config(),
        &ds,
        &out,
        &device,
        &NoopSink,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(report.steps, 6);
    assert_eq!(report.calibration_error, None);
    let teacher = report
        .teacher
        .as_ref()
        .expect("distillation trains a teacher first");
    assert_eq!(teacher.steps, 4);
    assert!(teacher.validation_roc_auc.is_some());
    // The teacher is used only where it beats the bi-encoder on validation, and the report
    // says both figures and what it was used for.
    let gate = report
        .teacher_gate
        .clone()
        .expect("distillation reports its gate");
    let beats = |a: Option<f64>, b: Option<f64>| matches!((a, b), (Some(a), Some(b)) if a > b);
    assert_eq!(
        gate.distilled,
        beats(
            gate.teacher_validation_roc_auc,
            gate.untrained_validation_roc_auc
        ),
        "{gate:?}"
    );
    assert_eq!(
        gate.rerank,
        beats(
            gate.teacher_validation_roc_auc,
            gate.trained_validation_roc_auc
        ),
        "{gate:?}"
    );
    assert_eq!(out.join("teacher").is_dir(), gate.rerank, "{gate:?}");
    assert_eq!(report.books.values().sum::<usize>(), 8);
    let test = report.test.as_ref().unwrap();
    assert_eq!(test.pairs, data.pairs(Split::Test).len());
    assert!(test.roc_auc.is_some_and(|a| (0.0..=1.0).contains(&a)));
    assert!(test.retrieval.is_some());
    assert!(report.baseline.as_ref().unwrap().roc_auc_cosine.is_some());
    let probe = report.topic_probe.unwrap();
    assert!((0.0..=1.0).contains(&probe.accuracy) && probe.test_rows > 0);
    assert!(report.topic_probe_baseline.is_some());
    let manifest = lexforge_core::verify_run_dir(&out).unwrap();
    assert_eq!(manifest.kind, "matcher");
    assert!(manifest.metrics.contains_key("test.roc_auc"));
    let validation = report.validation.as_ref().unwrap();
    assert!(validation.ece_after.is_some());
    for f in [
        "encoder/config.json",
        "encoder/model.safetensors",
        "encoder/tokenizer.json",
        "head/config.json",
        "head/model.safetensors",
        "calibration.json",
        "style_calibration.json",
        "eval/metrics.json",
        "events.jsonl",
        "manifest.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }

    if !gate.rerank {
        // The reranking machinery still gets its test: a teacher put in teacher/ by hand.
        lexforge_matcher::train_teacher(
            &config().teacher,
            &crate::minilm(),
            &data,
            &out.join("teacher"),
            &device,
            &NoopSink,
            &CancelToken::new(),
        )
        .unwrap();
    }
    for f in [
        "teacher/encoder/model.safetensors",
        "teacher/head/model.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }

    // Reload: identical scores, calibrations loaded.
    let a = Matcher::load(&out, &device).unwrap();
    let b = Matcher::load(&out, &device).unwrap();
    assert!(a.calibration().is_some() && a.style_calibration().is_some());
    let t1 = &data.pairs(Split::Test)[0].text1;
    let t2 = &data.pairs(Split::Test)[0].text2;
    let sa = a.score(t1, t2).unwrap();
    assert_eq!(sa, b.score(t1, t2).unwrap());
    assert_eq!(sa, a.score(t1, t2).unwrap(), "scoring is deterministic");
    assert!((0.0..=1.0).contains(&sa.probability));
    let style = a.style_similarity(t1, t2).unwrap();
    assert!((0.0..=1.0).contains(&style));

    // Search: the library of the test books, queried with one of their chunks.
    let mut books: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for c in data.chunks(Split::Test) {
        books
            .entry(c.book.clone())
            .or_default()
            .push(c.text.clone());
    }
    let books: Vec<(String, Vec<String>)> = books.into_iter().collect();
    let library = a.library(&books, 16).unwrap();
    assert!(a.teacher().is_some());
    let plain = SearchOptions {
        rerank: Some(false),
        ..SearchOptions::top(5)
    };
    let hits = a.search_with(&books[0].1[0], &library, &plain).unwrap();
    assert_eq!(hits.len(), library.len().min(5));
    assert!(hits.windows(2).all(|w| w[0].cosine >= w[1].cosine));
    assert!(hits.iter().all(|h| h.rerank.is_none()));
    // Two-stage: the teacher reranks the prefiltered books by its best logit.
    let reranked = a.search(&books[0].1[0], &library, 5).unwrap();
    assert_eq!(reranked.len(), hits.len());
    assert!(reranked.iter().all(|h| h.rerank.is_some()));
    assert!(
        reranked
            .windows(2)
            .all(|w| w[0].rerank.unwrap() >= w[1].rerank.unwrap())
    );

    // Bad input.
    assert!(matches!(
        a.score("", t2),
        Err(MatcherError::InvalidInput { .. })
    ));
    let long = t1.repeat(40);
    assert!(a.truncated(&long).unwrap());
    assert!(
        a.score(&long, t2).is_ok(),
        "long texts are truncated, not refused"
    );

    // Calibrating again through the API keeps the manifest consistent.
    let mut c = Matcher::load(&out, &device).unwrap();
    c.calibrate(&data, Split::Validation, ThresholdMetric::Accuracy, 16)
        .unwrap();
    assert!(Matcher::load(&out, &device).is_ok());

    // A corrupt calibration file is a typed error naming it: first the manifest's checksum,
    // then (without a manifest) the calibration reader itself.
    fs::write(out.join("calibration.json"), b"{\"temperature\": oops").unwrap();
    let err = Matcher::load(&out, &device).unwrap_err();
    assert_eq!(err.kind(), lexforge_core::ErrorKind::Artifact, "{err}");
    assert!(err.to_string().contains("calibration.json"), "{err}");
    fs::remove_file(out.join("manifest.json")).unwrap();
    match Matcher::load(&out, &device) {
        Err(MatcherError::Calibration { path, .. }) => assert!(path.ends_with("calibration.json")),
        other => panic!("expected a calibration error, got {other:?}"),
    }

    // A dataset of a foreign format version is refused.
    let manifest_path = ds.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    manifest["config"]["format"] = 99.into();
    fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    assert!(matches!(
        PreparedDataset::open(&ds),
        Err(MatcherError::Dataset { .. })
    ));
}
