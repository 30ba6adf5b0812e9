//! `lexforge prepare`: one process and shard + merge give the same dataset; bad input refused.

use std::path::{Path, PathBuf};

use lexforge::data::{Split, read_pairs, read_pairs_parquet};

use crate::{cli, lexforge, ok_json, stderr, stdout};

fn encoder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/roberta_tiny/roberta")
}

fn library(dir: &Path) -> PathBuf {
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/gutenberg/books");
    let root = dir.join("books");
    for book in [
        "jane_austen/emma.txt",
        "william_blake/poems_of_william_blake.txt",
        "h_g_wells/the_time_machine.txt",
        "thomas_paine/common_sense.txt",
        "lewis_carroll/alices_adventures_in_wonderland.txt",
        "arthur_conan_doyle/a_study_in_scarlet.txt",
    ] {
        let to = root.join(book);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(corpus.join(book), to).unwrap();
    }
    root
}

const PARAMS: [&str; 12] = [
    "--seed",
    "3",
    "--chunk-size",
    "3",
    "--max-chunks-per-book",
    "6",
    "--pairs-per-book",
    "8",
    "--validation-fraction",
    "0.2",
    "--test-fraction",
    "0.2",
];

#[test]
fn prepare_in_one_process_equals_shard_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let root = library(dir.path());
    let enc = encoder();
    let one = dir.path().join("one");
    let mut args = vec![
        "prepare",
        root.to_str().unwrap(),
        "--out",
        one.to_str().unwrap(),
        "--encoder",
        enc.to_str().unwrap(),
        "--json",
    ];
    args.extend(PARAMS);
    let summary: serde_json::Value = ok_json(&args);
    assert_eq!(summary["books"]["train"], 2);
    assert_eq!(summary["books"]["test"], 2);

    let mut shards = Vec::new();
    for i in ["0", "1"] {
        let shard = dir.path().join(format!("shard{i}"));
        let mut args = vec![
            "prepare",
            "shard",
            root.to_str().unwrap(),
            "--index",
            i,
            "--count",
            "2",
            "--out",
            shard.to_str().unwrap(),
            "--encoder",
            enc.to_str().unwrap(),
        ];
        args.extend(PARAMS);
        let o = lexforge(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains(&format!("shard {i}/2")));
        shards.push(shard);
    }
    // The merge runs with no model anywhere it could look (no LEXFORGE_MINILM_DIR, an empty
    // Hugging Face cache, no venv, a bare HOME): the shards carry the vectors.
    let merged = dir.path().join("merged");
    let mut args = vec!["prepare", "merge"];
    args.extend(shards.iter().map(|s| s.to_str().unwrap()));
    args.extend(["--out", merged.to_str().unwrap()]);
    args.extend(PARAMS);
    let bare = dir.path().join("bare-home");
    std::fs::create_dir(&bare).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lexforge"))
        .args(&args)
        .env_remove("LEXFORGE_MINILM_DIR")
        .env_remove("VIRTUAL_ENV")
        .env_remove("HF_HUB_CACHE")
        .env_remove("XDG_CACHE_HOME")
        .env("HF_HOME", &bare)
        .env("HOME", &bare)
        .current_dir(&bare)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("train"), "{}", stdout(&o));
    for f in [
        "train.jsonl",
        "validation.jsonl",
        "test.jsonl",
        "chunks.jsonl",
        "books.jsonl",
    ] {
        assert_eq!(
            std::fs::read(one.join(f)).unwrap(),
            std::fs::read(merged.join(f)).unwrap(),
            "{f}"
        );
    }

    // The same dataset with Parquet pair files: the same rows, typed; the tables unchanged.
    let pq = dir.path().join("pq");
    let mut args = vec![
        "prepare",
        root.to_str().unwrap(),
        "--out",
        pq.to_str().unwrap(),
        "--encoder",
        enc.to_str().unwrap(),
        "--format",
        "parquet",
    ];
    args.extend(PARAMS);
    let o = lexforge(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    for split in Split::ALL {
        assert!(!pq.join(format!("{}.jsonl", split.name())).exists());
        let rows = read_pairs_parquet(&pq.join(format!("{}.parquet", split.name()))).unwrap();
        assert!(!rows.is_empty());
        assert_eq!(rows, read_pairs(&one, split).unwrap(), "{}", split.name());
    }
    for f in ["chunks.jsonl", "books.jsonl"] {
        assert_eq!(
            std::fs::read(one.join(f)).unwrap(),
            std::fs::read(pq.join(f)).unwrap()
        );
    }
    let o = cli(&format!(
        "prepare {} --out {} --format csv",
        root.display(),
        dir.path().join("c").display()
    ));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("jsonl or parquet"), "{}", stderr(&o));

    // Merging with other parameters is refused, naming the shard.
    let o = cli(&format!(
        "prepare merge {} {} --out {} --seed 4",
        shards[0].display(),
        shards[1].display(),
        dir.path().join("x").display(),
    ));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("stage-A parameters"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(shards[0].to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    // A missing part, and a part given twice, name the shards.
    let params = PARAMS.join(" ");
    let o = cli(&format!(
        "prepare merge {} --out {} {params}",
        shards[1].display(),
        dir.path().join("x").display(),
    ));
    assert!(stderr(&o).contains("parts [0]"), "{}", stderr(&o));
    let o = cli(&format!(
        "prepare merge {0} {1} {1} --out {2} {params}",
        shards[0].display(),
        shards[1].display(),
        dir.path().join("x").display(),
    ));
    assert!(stderr(&o).contains("written twice"), "{}", stderr(&o));
    assert!(!dir.path().join("x").exists());
}

#[test]
fn empty_directories_and_bad_parameters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let enc = encoder();
    let o = cli(&format!(
        "prepare {} --out {} --encoder {}",
        dir.path().display(),
        dir.path().join("out").display(),
        enc.display()
    ));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no .txt files"), "{}", stderr(&o));
    let o = cli(&format!(
        "prepare {} --out {} --chunk-size 2 --overlap 2",
        dir.path().display(),
        dir.path().join("out").display()
    ));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("overlap"), "{}", stderr(&o));
    assert!(!dir.path().join("out").exists());
}

#[test]
fn a_shard_with_the_embedding_cache_is_the_same_shard() {
    let dir = tempfile::tempdir().unwrap();
    let root = library(dir.path());
    let enc = encoder();
    let cache = dir.path().join("cache");
    let mut arrays = Vec::new();
    for run in ["a", "b"] {
        let out = dir.path().join(run);
        let mut args = vec![
            "prepare",
            "shard",
            root.to_str().unwrap(),
            "--index",
            "0",
            "--count",
            "1",
            "--out",
            out.to_str().unwrap(),
            "--encoder",
            enc.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ];
        args.extend(PARAMS);
        let o = lexforge(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        arrays.push(std::fs::read(out.join("arrays.safetensors")).unwrap());
        // The first run filled the cache; the second read its vectors from it.
        assert!(std::fs::read_dir(&cache).unwrap().count() > 0);
    }
    assert_eq!(arrays[0], arrays[1]);
}
