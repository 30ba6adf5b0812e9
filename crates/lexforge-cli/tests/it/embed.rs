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
    assert!(String::from_utf8_lossy(&run.stderr).contains("config.json"));
    assert!(!out.exists());
}
