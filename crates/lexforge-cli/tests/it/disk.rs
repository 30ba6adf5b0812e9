//! Output that cannot be written: a disk that fills up mid-write leaves the previous artifact
//! intact (and training resumes once there is room), and a read-only output directory is a
//! clear error that leaves nothing behind.
//!
//! A full disk is a file-size limit (`ulimit -f`, with SIGXFSZ ignored so the write fails with
//! EFBIG the way it fails with ENOSPC): no mount needed. Read-only directories are `chmod 555`;
//! as root, which ignores permissions, the command runs as `nobody` (`setpriv`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{books, cli, lexforge, library, repo, stderr};

/// Runs the CLI with files limited to `kib` KiB.
fn with_file_limit(kib: u64, args: &[&str]) -> Output {
    let mut script = format!(
        "trap '' XFSZ; ulimit -f {kib}; exec '{}'",
        env!("CARGO_BIN_EXE_lexforge")
    );
    for a in args {
        script.push_str(&format!(" '{a}'"));
    }
    Command::new("bash").args(["-c", &script]).output().unwrap()
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Runs the CLI as a user the directory permissions apply to, with a home of its own inside
/// the test's directory `t` (never a fixed path of the machine).
fn unprivileged(t: &Path, args: &[String]) -> Output {
    let home = t.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    let bin = env!("CARGO_BIN_EXE_lexforge");
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
        c
    } else {
        Command::new(bin)
    };
    // The unprivileged user finds MiniLM where this process does (not through its own HOME).
    if let Some(minilm) = lexforge::nn::encoder::find_minilm() {
        cmd.env(lexforge::nn::encoder::MINILM_ENV, minilm);
    }
    cmd.args(args).env("HOME", &home).output().unwrap()
}

fn read_all(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn lm_config(dir: &Path, max_steps: u64) -> PathBuf {
    let text = books().join("lewis_carroll/alices_adventures_in_wonderland.txt");
    let path = dir.join("lm.toml");
    std::fs::write(
        &path,
        format!(
            "context = 32\n[corpus]\npaths = [\"{}\"]\n\
             [tokenizer.train]\nmethod = \"bpe\"\nvocab_size = 400\n[model]\ntype = \"gpt2\"\n\
             n_layer = 1\nn_head = 2\nn_embd = 64\n[train]\nmax_steps = {max_steps}\n\
             batch_size = 2\nwarmup_steps = 1\neval_every = 2\ncheckpoint_every = 2\n\
             log_every = 1\n[samples]\nprompts = []\n",
            text.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_disk_that_fills_up_during_a_checkpoint_keeps_the_last_one_and_resume_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let config = lm_config(tmp.path(), 4);
    let run = tmp.path().join("run");
    let o = cli(&format!(
        "lm train {} --out {}",
        config.display(),
        run.display()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let checkpoints = run.join("checkpoints");
    let before = read_all(&checkpoints);
    let model = std::fs::read(run.join("model.safetensors")).unwrap();

    // Room for the event log and small files, not for another checkpoint's weights.
    let largest_small = ["events.jsonl", "manifest.json"]
        .iter()
        .map(|f| std::fs::metadata(run.join(f)).unwrap().len())
        .max()
        .unwrap();
    assert!(
        (model.len() as u64) > largest_small + 64 * 1024,
        "the weights must not fit"
    );
    let limit_kib = largest_small / 1024 + 32;
    let o = with_file_limit(
        limit_kib,
        &["lm", "resume", run.to_str().unwrap(), "--max-steps", "8"],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "must fail cleanly: {err}");
    assert!(
        err.contains("File too large") && err.contains(".safetensors"),
        "the error names the file and the cause: {err}"
    );
    // The checkpoints on disk are exactly those before (no half-written one is left), and the
    // finished model is untouched.
    assert_eq!(read_all(&checkpoints), before);
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), model);

    // With room again, the run resumes from the last checkpoint and finishes.
    let o = cli(&format!("lm resume {} --max-steps 8 --json", run.display()));
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["steps"], 8);
    lexforge::verify_run_dir(&run).unwrap();
}

/// A prepared dataset and a matcher config training `steps` steps from the tiny RoBERTa.
pub(crate) fn matcher_inputs(dir: &Path, steps: u64) -> (PathBuf, PathBuf) {
    let roberta = repo().join("tests/fixtures/roberta_tiny/roberta");
    let dataset = dir.join("dataset");
    if !dataset.exists() {
        let books_dir = library(dir);
        let o = cli(&format!(
            "prepare {} --out {} --encoder {} --max-chunks-per-book 8",
            books_dir.display(),
            dataset.display(),
            roberta.display()
        ));
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let config = dir.join(format!("matcher-{steps}.toml"));
    std::fs::write(
        &config,
        format!(
            "base_model = \"{}\"\nmax_seq_length = 32\n[head]\nprojection_dim = 32\n\
             [train]\nmax_steps = {steps}\nbatch_size = 4\nwarmup_steps = 1\neval_every = 2\n\
             checkpoint_every = 2\n",
            roberta.display()
        ),
    )
    .unwrap();
    (dataset, config)
}

/// Trains `command INPUT --out OUT --config SMALL`, continues it with `command resume OUT
/// --max-steps MORE` into a disk with `limit_kib` KiB per file, and checks: exit 1 "File too
/// large", checkpoints untouched, the half-rewritten directory refuses `load` ("has not
/// finished"), and with room the resumed run finishes and loads.
fn continued_training_into_a_full_disk(
    command: &str,
    input: &Path,
    out: &Path,
    (small, more_steps): (&Path, u64),
    limit_kib: u64,
    load: &[&str],
) {
    let train = vec![
        command.to_owned(),
        "train".to_owned(),
        input.display().to_string(),
        "--out".to_owned(),
        out.display().to_string(),
        "--config".to_owned(),
        small.display().to_string(),
    ];
    let run = |args: &[String]| lexforge(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let o = run(&train);
    assert!(o.status.success(), "{}", stderr(&o));
    let checkpoints = out.join("checkpoints");
    let before = read_all(&checkpoints);
    let args = vec![
        command.to_owned(),
        "resume".to_owned(),
        out.display().to_string(),
        "--max-steps".to_owned(),
        more_steps.to_string(),
    ];
    let o = with_file_limit(
        limit_kib,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "must fail cleanly: {err}");
    assert!(err.contains("File too large"), "{err}");
    assert_eq!(
        read_all(&checkpoints),
        before,
        "the checkpoints are untouched"
    );
    // Half rewritten, the directory is not a model anyone can load by mistake.
    let o = lexforge(load);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("has not finished"), "{}", stderr(&o));
    let o = run(&args);
    assert!(
        o.status.success(),
        "with room, training resumes: {}",
        stderr(&o)
    );
    let o = lexforge(load);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_disk_that_fills_up_while_a_matcher_trains_keeps_its_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("matcher");
    let (dataset, small) = matcher_inputs(tmp.path(), 4);
    let o = out.display().to_string();
    continued_training_into_a_full_disk(
        "matcher",
        &dataset,
        &out,
        (&small, 8),
        64,
        &["matcher", "score", &o, "a passage", "another"],
    );
}

/// Word corpora from the shared books and a semantic config training `steps` steps.
pub(crate) fn semantic_inputs(dir: &Path, steps: u64) -> (PathBuf, PathBuf) {
    let corpora = dir.join("corpora.json");
    if !corpora.exists() {
        crate::word_corpora(&corpora, 20);
    }
    let config = dir.join(format!("semantic-{steps}.toml"));
    std::fs::write(
        &config,
        format!(
            "hidden_dim = 32\n[train]\nmax_steps = {steps}\nbatch_size = 8\nwarmup_steps = 1\n\
             eval_every = 2\ncheckpoint_every = 2\n"
        ),
    )
    .unwrap();
    (corpora, config)
}

#[test]
fn a_disk_that_fills_up_while_a_semantic_encoder_trains_keeps_its_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("semantic");
    let (corpora, small) = semantic_inputs(tmp.path(), 4);
    let o = out.display().to_string();
    continued_training_into_a_full_disk(
        "semantic",
        &corpora,
        &out,
        (&small, 8),
        24,
        &["semantic", "encode", &o, "sea", "ship"],
    );
}

#[test]
fn a_disk_that_fills_up_while_embedding_keeps_the_previous_output() {
    let tmp = tempfile::tempdir().unwrap();
    let model = repo().join("tests/fixtures/roberta_tiny/roberta");
    let (small, big) = (tmp.path().join("small.txt"), tmp.path().join("big.txt"));
    std::fs::write(&small, "one line\n").unwrap();
    std::fs::write(&big, "a line of text\n".repeat(2000)).unwrap();
    let out = tmp.path().join("out.npy");
    let args = |input: &Path| {
        vec![
            "embed".to_owned(),
            model.display().to_string(),
            "--input".to_owned(),
            input.display().to_string(),
            "--out".to_owned(),
            out.display().to_string(),
        ]
    };
    let a = args(&small);
    let o = lexforge(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let first = std::fs::read(&out).unwrap();
    let b = args(&big);
    let o = with_file_limit(16, &b.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("File too large"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        first,
        "the old output is intact"
    );
    let strays: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(strays.is_empty(), "temporary files left: {strays:?}");
}

#[test]
fn read_only_output_directories_are_refused_and_stay_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::set_permissions(t, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ro = t.join("read-only");
    std::fs::create_dir(&ro).unwrap();
    let books_dir = library(t);
    let alice = books_dir.join("lewis_carroll/alices_adventures_in_wonderland.txt");
    let roberta = repo().join("tests/fixtures/roberta_tiny/roberta");
    let lm = lm_config(&ro, 2);
    let input = t.join("texts.txt");
    std::fs::write(&input, "a line\n").unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let s = |p: &Path| p.display().to_string();
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "tokenizer train",
            vec![
                "tokenizer".into(),
                "train".into(),
                s(&alice),
                "--out".into(),
                s(&ro.join("tok")),
                "--vocab-size".into(),
                "400".into(),
            ],
        ),
        (
            "lm train",
            vec![
                "lm".into(),
                "train".into(),
                s(&lm),
                "--out".into(),
                s(&ro.join("run")),
            ],
        ),
        (
            "prepare",
            vec![
                "prepare".into(),
                s(&books_dir),
                "--out".into(),
                s(&ro.join("ds")),
                "--encoder".into(),
                s(&roberta),
            ],
        ),
        (
            "embed",
            vec![
                "embed".into(),
                s(&roberta),
                "--input".into(),
                s(&input),
                "--out".into(),
                s(&ro.join("x.npy")),
            ],
        ),
    ];
    let (dataset, matcher_config) = matcher_inputs(t, 2);
    let (corpora, semantic_config) = semantic_inputs(t, 2);
    let mut cases = cases;
    cases.push((
        "semantic train",
        vec![
            "semantic".into(),
            "train".into(),
            s(&corpora),
            "--out".into(),
            s(&ro.join("s")),
            "--config".into(),
            s(&semantic_config),
        ],
    ));
    cases.push((
        "matcher train",
        vec![
            "matcher".into(),
            "train".into(),
            s(&dataset),
            "--out".into(),
            s(&ro.join("m")),
            "--config".into(),
            s(&matcher_config),
        ],
    ));
    let before = read_all(&ro);
    for (what, args) in cases {
        let o = unprivileged(t, &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("Permission denied") && err.contains(&s(&ro)),
            "{what}: the error names the directory and the cause: {err}"
        );
        assert_eq!(read_all(&ro), before, "{what} left files behind");
    }
}

#[test]
fn a_disk_that_fills_up_while_saving_a_tokenizer_or_a_dataset_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let books_dir = library(t);
    let alice = books_dir.join("lewis_carroll/alices_adventures_in_wonderland.txt");
    let roberta = repo().join("tests/fixtures/roberta_tiny/roberta");
    let s = |p: &Path| p.display().to_string();
    // A finished tokenizer beside the new one must survive, whatever happens to the new one.
    let old = t.join("old-tok");
    let tok_args = |out: &Path| {
        vec![
            "tokenizer".to_owned(),
            "train".to_owned(),
            s(&alice),
            "--out".to_owned(),
            s(out),
            "--vocab-size".to_owned(),
            "600".to_owned(),
        ]
    };
    let o = lexforge(
        &tok_args(&old)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let old_files = read_all(&old);
    let tokenizer_bytes = std::fs::metadata(old.join("tokenizer.json")).unwrap().len();
    assert!(tokenizer_bytes > 16 * 1024, "tokenizer.json must not fit");
    let listing = || {
        let mut v: Vec<_> = std::fs::read_dir(t)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        v.sort();
        v
    };
    let before = listing();
    let cases: Vec<(&str, Vec<String>, PathBuf)> = vec![
        ("tokenizer train", tok_args(&t.join("tok")), t.join("tok")),
        (
            "prepare",
            vec![
                "prepare".into(),
                s(&books_dir),
                "--out".into(),
                s(&t.join("ds")),
                "--encoder".into(),
                s(&roberta),
                "--max-chunks-per-book".into(),
                "8".into(),
            ],
            t.join("ds"),
        ),
    ];
    for (what, args, out) in cases {
        let o = with_file_limit(8, &args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{what} must fail cleanly: {err}");
        assert!(err.contains("File too large"), "{what}: {err}");
        assert!(!out.exists(), "{what} left a partial {}", out.display());
        assert_eq!(listing(), before, "{what} left temporary files");
        assert_eq!(
            read_all(&old),
            old_files,
            "{what} touched the finished tokenizer"
        );
    }
}

#[test]
fn calibrating_a_read_only_matcher_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::set_permissions(t, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (dataset, config) = matcher_inputs(t, 2);
    let matcher = t.join("m");
    let s = |p: &Path| p.display().to_string();
    let o = lexforge(&[
        "matcher",
        "train",
        &s(&dataset),
        "--out",
        &s(&matcher),
        "--config",
        &s(&config),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::set_permissions(&matcher, std::fs::Permissions::from_mode(0o555)).unwrap();
    let before = read_all(&matcher);
    let o = unprivileged(
        t,
        &[
            "matcher".into(),
            "calibrate".into(),
            s(&matcher),
            "--dataset".into(),
            s(&dataset),
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Permission denied") && err.contains(&s(&matcher)),
        "the error names the directory and the cause: {err}"
    );
    assert_eq!(read_all(&matcher), before, "calibrate changed the matcher");
    // The matcher still loads and scores.
    let o = lexforge(&["matcher", "score", &s(&matcher), "a passage", "another"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
