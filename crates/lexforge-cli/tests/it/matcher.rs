//! `lexforge matcher`: pipeline (prepare → train → calibrate → evaluate), then score, search,
//! evaluate and calibrate on the result; bad input refused with a message.

use std::path::{Path, PathBuf};

use crate::{cli, lexforge, library, ok_json, stderr};

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/roberta_tiny/roberta")
}

#[test]
fn pipeline_then_score_search_evaluate_calibrate() {
    let dir = tempfile::tempdir().unwrap();
    let books = library(dir.path());
    let config = dir.path().join("matcher.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[prepare]
seed = 3
[prepare.chunk]
chunk_size = 3
max_chunks_per_book = 8
[prepare.pairs]
pairs_per_book = 12
[prepare.splits]
validation_fraction = 0.2
test_fraction = 0.2
[prepare.topics]
k = 3

[matcher]
base_model = "{}"
max_seq_length = 32
[matcher.head]
projection_dim = 32
style_features = true
[matcher.train]
max_steps = 6
batch_size = 8
lr = 1e-3
warmup_steps = 1
eval_every = 3
checkpoint_every = 3
"#,
            base().display()
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    let report: serde_json::Value = ok_json(&[
        "matcher",
        "pipeline",
        books.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(report["matcher"]["steps"], 6);
    assert!(report["matcher"]["test"]["roc_auc"].is_number(), "{report}");
    assert!(report["dataset"]["chunks"].is_number(), "{report}");
    let m = out.join("matcher");
    let (ms, ds) = (m.to_str().unwrap(), out.join("dataset"));
    let ds = ds.to_str().unwrap();

    let s: serde_json::Value = ok_json(&[
        "matcher",
        "score",
        ms,
        "The cat sat.",
        "A dog barked loudly.",
    ]);
    let p = s["probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p) && s["truncated"] == false, "{s}");

    let hits: serde_json::Value = ok_json(&[
        "matcher",
        "search",
        ms,
        "It was a dark night.",
        "--library",
        ds,
        "-k",
        "2",
    ]);
    assert_eq!(hits.as_array().unwrap().len(), 2);

    let ev: serde_json::Value = ok_json(&[
        "matcher",
        "evaluate",
        ms,
        "--dataset",
        ds,
        "--split",
        "validation",
    ]);
    assert_eq!(ev["split"], "validation");

    let o = cli(&format!(
        "matcher calibrate {} --dataset {} --split train --metric f1",
        ms, ds
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lexforge(&["manifest", "verify", ms]);
    assert!(
        o.status.success(),
        "calibrate keeps the manifest valid: {}",
        stderr(&o)
    );

    // Bad input: an empty passage, a directory that is not a matcher, reranking without a
    // teacher.
    let o = lexforge(&["matcher", "score", ms, "", "x"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("empty"), "{}", stderr(&o));
    let o = lexforge(&["matcher", "score", ds, "a", "b"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("head"), "{}", stderr(&o));
    let o = lexforge(&["matcher", "search", ms, "x", "--library", ds, "--rerank"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("teacher"), "{}", stderr(&o));

    // The style channel and training on views from the command line: the flags reach the
    // saved configuration, the books are re-chunked, the result loads and scores.
    let sv = dir.path().join("styled");
    let train_config = dir.path().join("train.toml");
    std::fs::write(
        &train_config,
        "max_seq_length = 32\n[head]\nprojection_dim = 32\n[train]\nwarmup_steps = 1\n",
    )
    .unwrap();
    let o = cli(&format!(
        "matcher train {} --out {} --config {} --base-model {} --max-steps 4 --batch-size 3 --style-channel --views 2 --books {} --json",
        ds,
        sv.display(),
        train_config.display(),
        base().display(),
        books.display()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sv.join("manifest.json")).unwrap()).unwrap();
    let saved = &manifest["config"]["train"];
    assert_eq!(saved["views"]["views"], 2, "{saved}");
    assert!(
        saved["head"]["style_channel"]["buckets"].is_number(),
        "{saved}"
    );
    let score: serde_json::Value = ok_json(&[
        "matcher",
        "score",
        sv.to_str().unwrap(),
        "The cat sat.",
        "A dog.",
    ]);
    for key in [
        "probability",
        "same_book",
        "cosine",
        "logit",
        "style_similarity",
        "truncated",
    ] {
        assert!(!score[key].is_null(), "{key} in {score}");
    }
    // A run directory that exists is refused; `matcher resume` is how to continue one.
    let o = lexforge(&["matcher", "train", ds, "--out", sv.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let o = lexforge(&["matcher", "train", ds, "--out", "x", "--views", "1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("views.views"), "{}", stderr(&o));
}
