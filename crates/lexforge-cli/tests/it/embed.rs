//! `lexforge embed`: a lines file to a `.npy` of the encoder's vectors; bad input refused.

use std::path::Path;

use crate::{cli, lexforge};

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/roberta_tiny/roberta")
}

fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hl]).unwrap();
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let values = b[10 + hl..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, values)
}

#[test]
fn embed_writes_the_encoders_vectors_as_npy() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("lines.txt");
    std::fs::write(
        &input,
        "It was the best of times.\nCall me Ishmael.\nAlice sat by her sister.\n",
    )
    .unwrap();
    let out = dir.path().join("v.npy");
    let cache = dir.path().join("cache");
    let model = fixture();
    let args = [
        "embed",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "2",
        "--cache",
        cache.to_str().unwrap(),
        "--json",
    ];
    let run = lexforge(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["rows"], 3);
    assert_eq!(summary["cache"]["misses"], 3);
    let (shape, values) = read_npy(&out);
    assert_eq!(shape, vec![3, 32]);
    // Same vectors as the library computes.
    let enc = ::lexforge::nn::encoder::BertSentenceEncoder::load(
        &model,
        &::lexforge::Device::flex(),
        &::lexforge::nn::encoder::EncoderOptions::default(),
    )
    .unwrap();
    use ::lexforge::nn::encoder::SentenceEncoder;
    let e = enc
        .encode(
            &[
                "It was the best of times.",
                "Call me Ishmael.",
                "Alice sat by her sister.",
            ],
            8,
        )
        .unwrap();
    for (a, b) in values.iter().zip(e.as_slice()) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    // A second run is served from the cache.
    let again = lexforge(&args);
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(summary["cache"]["hits"], 3);
}

#[test]
fn embed_refuses_empty_lines_and_missing_models_leaving_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("lines.txt");
    std::fs::write(&input, "one\n\nthree\n").unwrap();
    let out = dir.path().join("v.npy");
    let model = fixture();
    let run = cli(&format!(
        "embed {} --input {} --out {}",
        model.display(),
        input.display(),
        out.display()
    ));
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("line 2 is empty"));
    assert!(!out.exists());
    std::fs::write(&input, "one\n").unwrap();
    let run = cli(&format!(
        "embed {} --input {} --out {}",
        dir.path().join("no-model").display(),
        input.display(),
        out.display()
    ));
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr)
            .contains("neither a directory nor a model in the Hugging Face cache")
    );
    assert!(!out.exists());
}

/// A Hugging Face hub cache (the layout `huggingface_hub` writes) holding the tiny RoBERTa as
/// `org/tiny-roberta`.
fn hub_cache(root: &Path) -> std::path::PathBuf {
    let repo = root.join("models--org--tiny-roberta");
    let snap = repo.join("snapshots").join("0123abcd");
    for entry in walk(&fixture()) {
        let dest = snap.join(entry.strip_prefix(fixture()).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&entry, &dest).unwrap();
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    root.to_path_buf()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_hub_id_embeds_from_the_local_cache_and_a_miss_names_where_it_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("lines.txt");
    std::fs::write(&input, "One line.\nAnother line.\n").unwrap();
    let (by_path, by_id) = (tmp.path().join("path.npy"), tmp.path().join("id.npy"));
    let o = cli(&format!(
        "embed {} --input {} --out {}",
        fixture().display(),
        input.display(),
        by_path.display()
    ));
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let run = |cache: &Path, out: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lexforge"))
            .args(["embed", "org/tiny-roberta", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(out)
            .env("HF_HUB_CACHE", cache)
            .output()
            .unwrap()
    };
    let o = run(&hub_cache(&tmp.path().join("hub")), &by_id);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert_eq!(read_npy(&by_id), read_npy(&by_path));
    let empty = tmp.path().join("empty-hub");
    std::fs::create_dir(&empty).unwrap();
    let o = run(&empty, &tmp.path().join("none.npy"));
    let err = crate::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("never downloads") && err.contains(&empty.display().to_string()),
        "{err}"
    );
    let _ = lexforge;
}
