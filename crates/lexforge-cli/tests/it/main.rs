//! End-to-end tests of the `lexforge` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

mod bad_input;
mod corrupt;
mod disk;
mod embed;
mod kill_resume;
mod lm;
mod matcher;
mod prepare;
mod semantic;
mod tokenizer;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Copies the directory tree `from` to `to`.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The shared book corpus (`books/{author}/{title}.txt`).
pub(crate) fn books() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/gutenberg/books")
}

/// The shared books [`library`] copies, as `{author}/{title}.txt`.
pub(crate) const LIBRARY_BOOKS: [&str; 6] = [
    "jane_austen/emma.txt",
    "jane_austen/pride_and_prejudice.txt",
    "h_g_wells/the_time_machine.txt",
    "thomas_paine/common_sense.txt",
    "lewis_carroll/alices_adventures_in_wonderland.txt",
    "arthur_conan_doyle/a_study_in_scarlet.txt",
];

/// Copies a few shared books ([`LIBRARY_BOOKS`]) into `dir/books/{author}/{title}.txt`.
pub(crate) fn library(dir: &Path) -> PathBuf {
    let root = dir.join("books");
    for book in LIBRARY_BOOKS {
        let to = root.join(book);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(books().join(book), to).unwrap();
    }
    root
}

/// `lexforge semantic corpora` over the shared books and their catalogue, `words` per corpus,
/// into `out`.
pub(crate) fn word_corpora(out: &Path, words: u32) {
    let o = lexforge(&[
        "semantic",
        "corpora",
        books().to_str().unwrap(),
        "--metadata",
        books().join("../books.csv").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--words-per-corpus",
        &words.to_string(),
    ]);
    assert!(o.status.success(), "corpora: {}", stderr(&o));
}

/// The highest step of the `progress` events in a run's `events.jsonl` (0 when none yet).
pub(crate) fn last_progress_step(events: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(events) else {
        return 0;
    };
    text.lines()
        .filter(|l| l.contains("\"type\":\"progress\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["step"].as_u64())
        .max()
        .unwrap_or(0)
}

/// The run directory the tests train the lm config file `config` into: `runs/{file stem}`
/// beside it.
pub(crate) fn lm_run_dir(config: &std::path::Path) -> std::path::PathBuf {
    let stem = config.file_stem().expect("a config file name");
    config
        .parent()
        .expect("a config directory")
        .join("runs")
        .join(stem)
}

/// `lexforge` with the whitespace-separated words of `line` as its arguments (the paths of
/// the tests have no spaces).
pub(crate) fn cli(line: &str) -> Output {
    lexforge(&line.split_whitespace().collect::<Vec<_>>())
}

/// [`cli`], which must succeed.
pub(crate) fn cli_ok(line: &str) {
    let o = cli(line);
    assert!(o.status.success(), "lexforge {line}: {}", stderr(&o));
}

/// [`ok_json`] of the whitespace-separated words of `line`.
pub(crate) fn cli_json<T: serde::de::DeserializeOwned>(line: &str) -> T {
    ok_json(&line.split_whitespace().collect::<Vec<_>>())
}

/// Runs `lexforge ARGS`, which must succeed, and parses what it printed as JSON.
pub(crate) fn ok_json<T: serde::de::DeserializeOwned>(args: &[&str]) -> T {
    let o = lexforge(args);
    assert!(o.status.success(), "lexforge {args:?}: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

pub(crate) fn lexforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lexforge"))
        .args(args)
        .output()
        .expect("the lexforge binary runs")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version_prints_the_crate_version() {
    let o = lexforge(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("lexforge {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn devices_names_every_backend_and_flex_works() {
    let o = lexforge(&["devices"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for name in ["flex", "ndarray", "wgpu", "cuda"] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    let flex = text.lines().find(|l| l.starts_with("flex")).unwrap();
    assert!(flex.contains("yes"), "{flex}");

    let o = lexforge(&["devices", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let flex = v
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "flex")
        .unwrap();
    assert_eq!(flex["compiled"], true);
    assert_eq!(flex["usable"], true);
    assert_eq!(flex["auto"], true);
    // Every candidate says why auto picks it or not.
    for b in v.as_array().unwrap() {
        let reason = b["auto_reason"].as_str().unwrap();
        let picked = b["auto"].as_bool().unwrap();
        assert!(
            reason.starts_with(if picked { "picked" } else { "not picked" }),
            "{b}"
        );
    }
    let precisions = flex["precisions"].as_array().unwrap();
    assert!(precisions.iter().any(|p| p == "f32"), "{precisions:?}");
}

fn make_run(root: &Path) -> std::path::PathBuf {
    let mut run =
        lexforge::RunDir::create(root, "r1", "test", lexforge::StageMode::Staged).unwrap();
    run.write_artifact("model.safetensors", &[1u8; 64]).unwrap();
    run.finish(lexforge::RunStatus::Completed).unwrap()
}

#[test]
fn manifest_verify_accepts_a_good_run_and_rejects_a_damaged_one() {
    let root = tempfile::tempdir().unwrap();
    let dir = make_run(root.path());
    let o = lexforge(&["manifest", "verify", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("1 artifact(s) verified"),
        "{}",
        stdout(&o)
    );

    std::fs::write(dir.join("model.safetensors"), [1u8; 10]).unwrap();
    let o = lexforge(&["manifest", "verify", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("model.safetensors") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn manifest_verify_on_a_missing_dir_is_a_clear_error() {
    let o = lexforge(&["manifest", "verify", "/definitely/not/here"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/definitely/not/here/manifest.json"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    let o = lexforge(&["no-such-command"]);
    assert_eq!(o.status.code(), Some(2));
}
