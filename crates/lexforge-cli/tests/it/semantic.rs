//! `lexforge semantic`: corpora from the shared books, pipeline (corpora → encoder), then
//! encode, similar and bad IDs refused with a message.

use std::path::Path;

use crate::{cli, cli_json, lexforge, ok_json, stderr, stdout};

#[test]
fn corpora_pipeline_encode_similar_and_bad_ids() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/gutenberg");
    let books = shared.join("books");
    let csv = shared.join("books.csv");
    let corpora = dir.path().join("corpora.json");
    let o = cli(&format!(
        "semantic corpora {} --metadata {} --out {} --words-per-corpus 30",
        books.display(),
        csv.display(),
        corpora.display()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("corpora of 30 words"), "{}", stdout(&o));

    let config = dir.path().join("semantic.toml");
    std::fs::write(
        &config,
        "words_per_corpus = 30\nword_generator = \"lora\"\n\
         [semantic.train]\nmax_steps = 60\nseed = 1\n\
         [base_lm]\nsteps = 20\nn_layer = 1\nn_embd = 32\nvocab_size = 600\n\
         [generator.train]\nmax_steps = 10\nbatch_size = 8\nwarmup_steps = 2\neval_every = 0\n\
         checkpoint_every = 0\n",
    )
    .unwrap();
    // `lexforge semantic pipeline BOOKS --metadata CSV --out OUT --config CONFIG EXTRA...`.
    let pipeline = |out: &Path, config: &Path, extra: &[&str]| {
        let mut args = vec![
            "semantic",
            "pipeline",
            books.to_str().unwrap(),
            "--metadata",
            csv.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        lexforge(&args)
    };
    let out = dir.path().join("run");
    let o = pipeline(&out, &config, &["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["encoder"]["levels"].as_array().unwrap().len(), 4);
    assert_eq!(report["generator"]["kind"], "lora");
    let enc = out.join("encoder");
    assert!(enc.join("semantic_ids.json").is_file());

    let v: serde_json::Value = ok_json(&[
        "semantic",
        "encode",
        enc.to_str().unwrap(),
        "anchor",
        "harbour",
        "sailor",
    ]);
    let id: Vec<String> = v["id"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect();
    assert_eq!(id.len(), 4);
    assert!(v["labels"]["style"].is_string());

    // decode: the ID's vector in the embedding model's space (MiniLM: 384 numbers).
    let (e, ids) = (enc.display(), id.join(" "));
    let vector: Vec<f64> = cli_json(&format!("semantic decode {e} --id {ids}"));
    assert_eq!(vector.len(), 384);
    assert!(vector.iter().all(|x| x.is_finite()));

    let hits: serde_json::Value = cli_json(&format!("semantic similar {e} -k 3 --id {ids}"));
    assert_eq!(hits.as_array().unwrap().len(), 3);

    // Words from the (tiny, barely trained) generator: a JSON list of clean words.
    let words: Vec<String> = cli_json(&format!("semantic generate {e} -n 5 --id {ids}"));
    assert!(words.len() <= 5);
    assert!(
        words
            .iter()
            .all(|w| w.chars().all(|c| c.is_ascii_lowercase())),
        "{words:?}"
    );
    assert!(enc.join("generator/adapters.safetensors").is_file());
    assert!(out.join("base-lm/model.safetensors").is_file());

    // The default word generator is vocabulary-guided (a 3,000-word vocabulary keeps the
    // test quick; without wordfreq it falls back to the corpora's words).
    let guided_config = dir.path().join("guided.toml");
    std::fs::write(
        &guided_config,
        "words_per_corpus = 30\n[semantic.train]\nmax_steps = 60\nseed = 1\n\
         [guided]\nvocabulary = 3000\n",
    )
    .unwrap();
    let guided = dir.path().join("guided");
    let o = pipeline(
        &guided,
        &guided_config,
        &["--generator", "guided", "--base-lm", "x"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--base-lm is for --generator lora"),
        "{}",
        stderr(&o)
    );
    let o = pipeline(&guided, &guided_config, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("word generator: guided, "),
        "{}",
        stdout(&o)
    );
    let genc = guided.join("encoder");
    assert!(genc.join("generator/guided.json").is_file());
    assert!(
        !guided.join("base-lm").exists(),
        "no language model for guided words"
    );
    let generate = |seed: &str| {
        let g = genc.display();
        cli_json::<Vec<String>>(&format!(
            "semantic generate {g} -n 10 --seed {seed} --id {ids}"
        ))
    };
    let words = generate("3");
    assert_eq!(words.len(), 10, "{words:?}");
    assert_eq!(generate("3"), words, "same seed, same words");

    // --precision: encoding computes in bf16 (mostly the same ID for the same words);
    // training refuses it with a typed message naming what it supports.
    let v: serde_json::Value = cli_json(&format!(
        "--precision bf16 semantic encode {e} anchor harbour sailor"
    ));
    assert_eq!(v["id"].as_array().unwrap().len(), 4);
    let o = cli(&format!(
        "--precision bf16 semantic train {} --out {}",
        corpora.display(),
        dir.path().join("bf16").display()
    ));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("supported: f32"), "{}", stderr(&o));
    let o = lexforge(&["--precision", "f8", "devices"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("f8"), "{}", stderr(&o));

    // Out-of-range and short IDs: typed errors, exit status 1.
    let o = cli(&format!("semantic similar {} --id 0 99 0 0", enc.display()));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("outside 0..32"), "{}", stderr(&o));
    let o = cli(&format!("semantic similar {} --id 0 1", enc.display()));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("4 components"), "{}", stderr(&o));
    // Empty corpora file.
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, r#"{"format":1,"generator":"x","corpora":[]}"#).unwrap();
    let o = lexforge(&["semantic", "train", empty.to_str().unwrap(), "--out", "x"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no corpora"), "{}", stderr(&o));
}
