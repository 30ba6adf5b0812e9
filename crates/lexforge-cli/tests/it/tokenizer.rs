//! `lexforge tokenizer ...` end to end on real books.

use std::path::PathBuf;

use crate::{cli, lexforge, ok_json, stderr, stdout};

fn book(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpora/gutenberg/books")
        .join(rel)
        .display()
        .to_string()
}

#[test]
fn train_inspect_encode_decode() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tok");
    let out_s = out.display().to_string();
    let events = dir.path().join("events.jsonl");
    let o = lexforge(&[
        "tokenizer",
        "train",
        "--method",
        "bpe",
        "--vocab-size",
        "600",
        "--holdout",
        "0.5",
        "--seed",
        "1",
        "--quiet",
        "--events",
        events.to_str().unwrap(),
        "--out",
        &out_s,
        &book("william_blake/poems_of_william_blake.txt"),
        &book("william_shakespeare/julius_caesar.txt"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("vocab size:      600"), "{text}");
    assert!(
        text.contains("split:           by document: train 1 docs"),
        "{text}"
    );
    assert!(text.contains("char coverage 100.0000%"), "{text}");
    assert!(out.join("tokenizer.json").is_file() && out.join("manifest.json").is_file());
    let ev = std::fs::read_to_string(&events).unwrap();
    assert!(ev.lines().last().unwrap().contains("\"completed\""), "{ev}");

    let info: serde_json::Value = ok_json(&["tokenizer", "inspect", &out_s, "--json"]);
    assert_eq!(info["method"], "bpe");
    assert_eq!(info["vocab_size"], 600);
    assert_eq!(info["stats"]["corpus"]["holdout_documents"], 1);

    let enc: serde_json::Value = ok_json(&[
        "tokenizer",
        "encode",
        &out_s,
        "Friends, Romans, countrymen",
        "--json",
    ]);
    let ids: Vec<String> = enc["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert!(!ids.is_empty());
    let mut args = vec!["tokenizer", "decode", &out_s];
    args.extend(ids.iter().map(String::as_str));
    let o = lexforge(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Friends, Romans, countrymen\n");
}

#[test]
fn bad_input_fails_cleanly_and_leaves_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tok");
    let out_s = out.display().to_string();
    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9\n").unwrap();
    let cases: [(Vec<String>, &str); 4] = [
        (
            vec![dir.path().join("nope.txt").display().to_string()],
            "nope.txt",
        ),
        (vec![latin1.display().to_string()], "latin1.txt"),
        (
            vec![
                "--vocab-size".into(),
                "100".into(),
                book("william_blake/poems_of_william_blake.txt"),
            ],
            "vocab_size",
        ),
        (
            vec![
                "--holdout".into(),
                "0.9".into(),
                latin1.display().to_string(),
            ],
            "holdout",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["tokenizer", "train", "-q", "--out", &out_s];
        args.extend(extra.iter().map(String::as_str));
        let o = lexforge(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(needle), "{needle}: {}", stderr(&o));
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["latin1.txt"], "nothing else is left behind");
    }
    let o = cli(&format!("tokenizer train --method bpf --out {} x", out_s));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bpf"), "{}", stderr(&o));
}
