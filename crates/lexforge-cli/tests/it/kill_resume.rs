//! Kill-and-resume campaign: each training pipeline (language model, matcher, semantic
//! encoder) runs as a `lexforge` subprocess that is SIGKILLed at seeded points, resumed, and
//! must end with the same weights (byte for byte) and the same metrics as an uninterrupted run
//! with the same seed.
//!
//! Kill points come from a seeded generator and are of three kinds:
//! - `random`: a uniform moment of the reference run's duration (a step, usually);
//! - `checkpoint`: the moment a checkpoint's temporary directory appears (mid-write);
//! - `eval`: right after the progress event of an evaluation step (during the evaluation).
//!
//! A trial starts a fresh output directory, kills it `KILLS_PER_TRIAL` times (each restart
//! resumes), lets the last restart finish, and compares. `LEXFORGE_KILL_POINTS` sets the kills
//! per pipeline (default 3 in CI; `scripts/reliability.sh --full` runs 12) and
//! `LEXFORGE_KILL_SEED` the seed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{books, cli, last_progress_step, lexforge, library, stderr};

const KILLS_PER_TRIAL: usize = 3;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// SplitMix64: a tiny seeded generator (the campaign must be repeatable, not secure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Trigger {
    /// After this fraction of the reference run's wall time.
    Random(f64),
    /// When a checkpoint temporary directory exists.
    Checkpoint,
    /// Right after the progress event of an evaluation step.
    Eval,
}

/// One pipeline under test.
struct Pipeline {
    name: &'static str,
    /// The command that trains into a new directory (`{out}` is replaced).
    train: Vec<String>,
    /// The command that resumes after a kill (`{out}` is replaced).
    resume: Vec<String>,
    /// The directory holding `events.jsonl` and `checkpoints/`, relative to `{out}`.
    run_dir: &'static str,
    /// Steps at which evaluation runs (multiples of this).
    eval_every: u64,
    /// The metrics file, relative to the run directory.
    metrics: &'static str,
}

fn fill(args: &[String], out: &Path) -> Vec<String> {
    args.iter()
        .map(|a| a.replace("{out}", &out.display().to_string()))
        .collect()
}

fn checkpoint_in_flight(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
    })
}

/// What a kill interrupted, read off the run directory right after it, with the last step
/// the run reported (`step@0`: before the first step, while preparing).
fn phase(run: &Path, trigger: Trigger) -> String {
    let what = if checkpoint_in_flight(run) {
        "checkpoint"
    } else if trigger == Trigger::Eval {
        "eval"
    } else {
        "step"
    };
    format!("{what}@{}", last_progress_step(&run.join("events.jsonl")))
}

/// Starts `args`, kills it when `trigger` fires; `None` when it finished first.
fn run_and_kill(
    args: &[String],
    run: &Path,
    trigger: Trigger,
    reference: Duration,
    eval_every: u64,
) -> Option<String> {
    // stderr goes to a file (a pipe nobody reads could fill up and stall the run).
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lexforge"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let events = run.join("events.jsonl");
    let first_step = last_progress_step(&events);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            // Finished before the trigger: it must have finished well.
            assert!(
                status.success(),
                "{args:?} failed: {}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
            return None;
        }
        let fire = match trigger {
            Trigger::Random(f) => start.elapsed() >= reference.mul_f64(f),
            Trigger::Checkpoint => checkpoint_in_flight(run),
            Trigger::Eval => {
                let s = last_progress_step(&events);
                s > first_step && eval_every > 0 && s.is_multiple_of(eval_every)
            }
        };
        if fire {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return Some(phase(run, trigger));
        }
        assert!(
            start.elapsed() < reference * 20 + Duration::from_secs(60),
            "no trigger"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Every `.safetensors` file of a finished run, relative to it: the final weights and those of
/// the checkpoints kept at the end (the optimizer's included).
fn safetensors_files(run: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|x| x == "safetensors") {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(run, run, &mut out);
    out.sort();
    out
}

fn numeric_metrics(path: &Path) -> Vec<(String, f64)> {
    fn walk(v: &serde_json::Value, prefix: String, out: &mut Vec<(String, f64)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    walk(v, format!("{prefix}.{k}"), out);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, format!("{prefix}[{i}]"), out);
                }
            }
            serde_json::Value::Number(n) => {
                // Wall-clock figures differ between any two runs.
                let timing = ["seconds", "per_sec", "elapsed", "time"]
                    .iter()
                    .any(|t| prefix.contains(t));
                if !timing {
                    out.push((prefix, n.as_f64().unwrap_or(f64::NAN)));
                }
            }
            _ => {}
        }
    }
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    walk(&v, String::new(), &mut out);
    out
}

/// Runs the campaign for `p`; returns (kills survived, phases seen).
fn campaign(p: &Pipeline, kills: usize, seed: u64) -> (usize, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let reference_out = tmp.path().join("reference");
    let start = Instant::now();
    let o = lexforge(
        &fill(&p.train, &reference_out)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}: {}", p.name, stderr(&o));
    let reference = start.elapsed();
    let reference_run = reference_out.join(p.run_dir);

    let mut rng = Rng(seed ^ p.name.len() as u64);
    let (mut done, mut phases, mut trial) = (0, Vec::new(), 0);
    while done < kills {
        trial += 1;
        assert!(trial <= kills * 4, "{}: too few kills landed", p.name);
        let out = tmp.path().join(format!("trial-{trial}"));
        let run = out.join(p.run_dir);
        let (mut started, mut finished) = (false, false);
        for _ in 0..KILLS_PER_TRIAL.min(kills - done) {
            let trigger = match rng.next() % 4 {
                0 => Trigger::Checkpoint,
                1 => Trigger::Eval,
                _ => Trigger::Random(rng.unit()),
            };
            let args = if started {
                fill(&p.resume, &out)
            } else {
                fill(&p.train, &out)
            };
            match run_and_kill(&args, &run, trigger, reference, p.eval_every) {
                Some(phase) => {
                    done += 1;
                    phases.push(phase);
                    // Killed before the run directory had a manifest: start it again.
                    started = run.join("manifest.json").is_file();
                }
                None => {
                    // Finished before the trigger: compare as it is.
                    finished = true;
                    break;
                }
            }
        }
        if !finished {
            let args = if started {
                fill(&p.resume, &out)
            } else {
                fill(&p.train, &out)
            };
            let o = lexforge(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(o.status.success(), "{} resume: {}", p.name, stderr(&o));
        }
        let weights = safetensors_files(&reference_run);
        assert!(!weights.is_empty(), "{}: no weights in the run", p.name);
        for f in &weights {
            let (a, b) = (
                std::fs::read(reference_run.join(f)).unwrap(),
                std::fs::read(run.join(f)).unwrap_or_else(|e| {
                    let listing: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
                        .map(|d| d.flatten().map(|e| e.file_name()).collect())
                        .unwrap_or_default();
                    panic!(
                        "{} trial {trial}: {}: {e} (kills: {phases:?}; checkpoints: \
                             {listing:?})",
                        p.name,
                        f.display()
                    )
                }),
            );
            assert!(
                a == b,
                "{} trial {trial}: {} differs from the uninterrupted run (kills: {phases:?})",
                p.name,
                f.display()
            );
        }
        assert_eq!(
            numeric_metrics(&reference_run.join(p.metrics)),
            numeric_metrics(&run.join(p.metrics)),
            "{} trial {trial}: metrics differ",
            p.name
        );
        // The event log stays whole: every line one event.
        lexforge::JsonlSink::read_all(&run.join("events.jsonl")).unwrap();
    }
    (done, phases)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn lm_pipeline(dir: &Path) -> Pipeline {
    let b = books();
    let config = dir.join("lm.toml");
    std::fs::write(
        &config,
        format!(
            r#"
seed = 11
context = 32
[corpus]
paths = ["{a}", "{c}"]
validation_fraction = 0.34
[tokenizer.train]
method = "bpe"
vocab_size = 400
[model]
type = "gpt2"
n_layer = 2
n_head = 2
n_embd = 32
dropout = 0.1
[train]
max_steps = 40
batch_size = 8
lr = 3e-3
min_lr = 3e-4
warmup_steps = 4
eval_every = 10
eval_batches = 2
checkpoint_every = 5
log_every = 1
[samples]
prompts = ["The "]
max_new_tokens = 8
"#,
            a = b.join("william_blake/poems_of_william_blake.txt").display(),
            c = b.join("thomas_paine/common_sense.txt").display(),
        ),
    )
    .unwrap();
    // Each trial trains into its own `{out}`.
    let config = config.display().to_string();
    Pipeline {
        name: "lm",
        train: strings(&["lm", "train", &config, "--out", "{out}/run", "--json"]),
        resume: strings(&["lm", "resume", "{out}/run", "--json"]),
        run_dir: "run",
        eval_every: 10,
        metrics: "eval/metrics.json",
    }
}

/// A prepared dataset (the tiny RoBERTa fixture mines the negatives) and a tiny matcher.
fn matcher_pipeline(dir: &Path) -> Pipeline {
    let base = repo().join("tests/fixtures/roberta_tiny/roberta");
    let dataset = dir.join("dataset");
    let library = library(dir);
    let o = cli(&format!(
        "prepare {} --out {} --encoder {} --seed 3 --chunk-size 3 --max-chunks-per-book 8 --pairs-per-book 12 --validation-fraction 0.2 --test-fraction 0.2 --json",
        library.display(),
        dataset.display(),
        base.display()
    ));
    assert!(o.status.success(), "prepare: {}", stderr(&o));
    let config = dir.join("matcher.toml");
    std::fs::write(
        &config,
        format!(
            "base_model = \"{}\"\nmax_seq_length = 32\n[head]\nprojection_dim = 32\n\
             style_features = true\n[train]\nmax_steps = 40\nbatch_size = 8\nlr = 1e-3\n\
             warmup_steps = 1\neval_every = 8\ncheckpoint_every = 4\nlog_every = 1\nseed = 5\n",
            base.display()
        ),
    )
    .unwrap();
    trained_in_out("matcher", &dataset, &config, 8)
}

/// `NAME train INPUT --out {out} --config CONFIG`, resumed with `NAME resume {out}`.
fn trained_in_out(name: &'static str, input: &Path, config: &Path, eval_every: u64) -> Pipeline {
    let (input, config) = (input.display(), config.display());
    let train = format!("{name} train {input} --out {{out}} --config {config} --json");
    Pipeline {
        name,
        train: train.split_whitespace().map(str::to_owned).collect(),
        resume: strings(&[name, "resume", "{out}", "--json"]),
        run_dir: "",
        eval_every,
        metrics: "eval/metrics.json",
    }
}

/// Word corpora from the shared books and a semantic encoder over MiniLM embeddings.
fn semantic_pipeline(dir: &Path) -> Pipeline {
    let corpora = dir.join("corpora.json");
    crate::word_corpora(&corpora, 30);
    let config = dir.join("semantic.toml");
    std::fs::write(
        &config,
        "[train]\nmax_steps = 60\nseed = 1\neval_every = 10\ncheckpoint_every = 5\nlog_every = 1\n",
    )
    .unwrap();
    trained_in_out("semantic", &corpora, &config, 10)
}

fn run_campaign(make: fn(&Path) -> Pipeline) {
    let kills = env_u64("LEXFORGE_KILL_POINTS", 3) as usize;
    let seed = env_u64("LEXFORGE_KILL_SEED", 20_261_201);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = make(dir.path());
    let (survived, phases) = campaign(&pipeline, kills, seed);
    // Read by scripts/reliability.sh for the report.
    println!(
        "kill-resume {}: {survived} kills survived, phases {phases:?}",
        pipeline.name
    );
    assert!(survived >= kills);
}

#[test]
fn lm_survives_sigkill_at_seeded_points() {
    run_campaign(lm_pipeline);
}

#[test]
fn matcher_survives_sigkill_at_seeded_points() {
    run_campaign(matcher_pipeline);
}

#[test]
fn semantic_encoder_survives_sigkill_at_seeded_points() {
    run_campaign(semantic_pipeline);
}
