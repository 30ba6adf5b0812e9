//! `lexforge lm`: train from a TOML config, SIGKILL between checkpoints and resume to the same
//! weights bit for bit, eval, generate, score.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cli, last_progress_step, lexforge, ok_json, stderr, stdout};

fn books() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/gutenberg/books")
}

/// A tiny GPT-2 with dropout on (so the resume must also restore the dropout masks).
fn write_config(dir: &Path, max_steps: u64) -> PathBuf {
    let b = books();
    let toml = format!(
        r#"
seed = 7
context = 32

[corpus]
paths = ["{a}", "{c}", "{d}"]
validation_fraction = 0.34

[tokenizer.train]
method = "bpe"
vocab_size = 500

[model]
type = "gpt2"
n_layer = 2
n_head = 2
n_embd = 64
dropout = 0.1

[train]
max_steps = {max_steps}
batch_size = 8
grad_accum_steps = 2
lr = 3e-3
min_lr = 3e-4
warmup_steps = 4
eval_every = 10
eval_batches = 2
checkpoint_every = 10
log_every = 1

[samples]
prompts = ["The "]
max_new_tokens = 8
"#,
        a = b.join("william_blake/poems_of_william_blake.txt").display(),
        c = b.join("william_shakespeare/julius_caesar.txt").display(),
        d = b.join("thomas_paine/common_sense.txt").display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[test]
fn sigkill_between_checkpoints_then_resume_gives_the_same_weights_bitwise() {
    let tmp = tempfile::tempdir().unwrap();
    let (full_dir, killed_dir) = (tmp.path().join("full"), tmp.path().join("killed"));
    std::fs::create_dir_all(&full_dir).unwrap();
    std::fs::create_dir_all(&killed_dir).unwrap();

    let report: serde_json::Value = ok_json(&[
        "lm",
        "train",
        write_config(&full_dir, 30).to_str().unwrap(),
        "--out",
        full_dir.join("run").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(report["steps"], 30);

    let config = write_config(&killed_dir, 30);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lexforge"))
        .args(["lm", "train", config.to_str().unwrap(), "--json", "--out"])
        .arg(killed_dir.join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = killed_dir.join("run");
    let events = run.join("events.jsonl");
    let start = Instant::now();
    // Past the checkpoint of step 10, before the one of step 20.
    while last_progress_step(&events) < 13 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed_at = last_progress_step(&events);
    assert!(killed_at < 30, "killed at step {killed_at}");
    assert!(!run.join("model.safetensors").exists());
    let latest = std::fs::read_to_string(run.join("checkpoints/latest.json")).unwrap();
    assert!(
        !latest.contains(&format!("{killed_at:06}")),
        "killed between checkpoints: {latest}"
    );

    let resumed: serde_json::Value = ok_json(&["lm", "resume", run.to_str().unwrap(), "--json"]);
    assert_eq!(resumed["steps"], 30);
    assert_eq!(resumed["status"], "completed");

    // Weights byte for byte. (optimizer.bpk is not compared as bytes: burn writes its tensors in
    // HashMap order, which differs between processes; equal weights 20 steps after the resume
    // need equal moments anyway.)
    let full = full_dir.join("run");
    for f in [
        "checkpoints/step-000030/model.safetensors",
        "model.safetensors",
    ] {
        let (a, b) = (
            std::fs::read(full.join(f)).unwrap(),
            std::fs::read(run.join(f)).unwrap(),
        );
        assert!(
            a == b,
            "{f} differs between the uninterrupted and the killed+resumed run"
        );
    }
    assert_eq!(
        report["metrics"]["val_loss"],
        resumed["metrics"]["val_loss"]
    );
    // The resumed run's event log is whole: one valid event per line.
    lexforge::JsonlSink::read_all(&run.join("events.jsonl")).unwrap();
}

#[test]
fn eval_generate_and_score_use_a_finished_run() {
    let tmp = tempfile::tempdir().unwrap();
    let o = cli(&format!(
        "lm train {} --out {} --max-steps 12",
        write_config(tmp.path(), 12).display(),
        tmp.path().join("run").display()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("val_bits_per_char"), "{}", stdout(&o));
    let run = tmp.path().join("run");
    let run = run.to_str().unwrap();

    let m: serde_json::Value = ok_json(&["lm", "evaluate", run, "--json"]);
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("run/eval/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        m["val_loss"], saved["val_loss"],
        "eval recomputes the saved metrics"
    );

    let generate = |seed: &str| {
        let o = cli(&format!(
            "lm generate {} --prompt The --max-new-tokens 8 --seed {} --temperature 0.9 --num-return-sequences 2 --json",
            run, seed
        ));
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(generate("1"), generate("1"));
    let out: serde_json::Value = serde_json::from_str(&generate("1")).unwrap();
    assert_eq!(out.as_array().unwrap().len(), 2);

    let s: serde_json::Value = ok_json(&[
        "lm",
        "score",
        run,
        "--text",
        "Brutus is an honourable man.",
        "--top-k",
        "2",
        "--json",
    ]);
    assert!(s["loss"].as_f64().unwrap() > 0.0);
    assert_eq!(s["tokens"][0]["top_k"].as_array().unwrap().len(), 2);

    // A prompt longer than the context: a clear error, exit status 1.
    let long = "word ".repeat(100);
    let o = lexforge(&["lm", "generate", run, "--prompt", &long]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("context"), "{}", stderr(&o));
    // A bad config: the field is named.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(tmp.path().join("config.toml"))
            .unwrap()
            .replace("n_embd = 64", "n_embd = 65"),
    )
    .unwrap();
    let bad_run = tmp.path().join("bad");
    let o = cli(&format!(
        "lm train {} --out {}",
        bad.display(),
        bad_run.display()
    ));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("model.n_embd"), "{}", stderr(&o));
    assert!(!tmp.path().join("bad").exists());
}

#[test]
fn ctrl_c_stops_cleanly_with_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), 200);
    let child = Command::new(env!("CARGO_BIN_EXE_lexforge"))
        .args(["lm", "train", config.to_str().unwrap(), "--json", "--out"])
        .arg(tmp.path().join("run"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events = tmp.path().join("run/events.jsonl");
    let start = Instant::now();
    while last_progress_step(&events) < 3 {
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "cancelled");
    let steps = report["steps"].as_u64().unwrap();
    assert!((3..200).contains(&steps), "{report}");
    let latest = std::fs::read_to_string(tmp.path().join("run/checkpoints/latest.json")).unwrap();
    assert!(latest.contains(&format!("{steps:06}")), "{latest}");
}
