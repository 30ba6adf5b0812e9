//! Corrupt-artifact campaign: every artifact type lexforge writes or reads (tokenizer dir, LM
//! run, HF encoder dir, matcher dir, semantic encoder dir, prepared dataset) is damaged in every
//! way we can name (truncated, a flipped byte, a missing file, a tensor of the wrong shape with
//! a manifest that matches it, a manifest that lies about a checksum, a future manifest schema,
//! a config field from a future version, a symlink pointing outside), and loading each variant
//! through the CLI must fail with a typed error (exit 1, not a panic's 101, never success)
//! whose message names the damaged file.
//!
//! `LEXFORGE_CORRUPT_SAMPLE` keeps one variant in N per artifact (seeded; default 4 in CI,
//! `scripts/reliability.sh --full` uses 1: all of them).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{books, cli_ok, copy_dir, lexforge, library, repo, stderr};

/// An artifact directory and the command that loads it (`{dir}` is replaced).
struct Artifact {
    name: &'static str,
    dir: PathBuf,
    load: Vec<String>,
    /// Whether the directory carries a manifest with checksums (an HF directory does not, so
    /// a flipped byte inside its tensor data cannot be told from a real weight).
    manifest: bool,
    /// Config files whose schema lexforge owns (strict: a field from a future version is an
    /// error). HF files (`config.json` of a model, pooling configs) are left out: HF adds fields
    /// all the time, and tolerating them is what makes foreign models load.
    own_configs: &'static [&'static str],
}

/// One damaged copy: how to make it and which file the error must name.
struct Variant {
    label: String,
    names: String,
    apply: Box<dyn Fn(&Path)>,
}

/// What an HF sentence-transformers directory holds: the files a load needs, then those it
/// reads when present (a missing one means the defaults).
const HF_REQUIRED: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];
const HF_OPTIONAL: [&str; 3] = [
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

/// Files a load reads: those the manifest lists, or those of an HF directory.
fn loaded_files(a: &Artifact) -> Vec<String> {
    if a.manifest {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(a.dir.join("manifest.json")).unwrap()).unwrap();
        m["artifacts"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !k.starts_with("checkpoints/") && k.as_str() != "events.jsonl")
            .cloned()
            .collect()
    } else {
        HF_REQUIRED
            .iter()
            .chain(&HF_OPTIONAL)
            .filter(|f| a.dir.join(f).is_file())
            .map(|f| (*f).to_owned())
            .collect()
    }
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// Makes the manifest agree with `file` as it is now (so only deeper checks can catch it).
pub(crate) fn reseal(dir: &Path, file: &str) {
    let (sha, bytes) = lexforge::sha256_file(&dir.join(file)).unwrap();
    edit_manifest(dir, |m| {
        m["artifacts"][file] = serde_json::json!({ "sha256": sha, "bytes": bytes });
    });
}

/// The safetensors header of `path`: its JSON and where the data starts.
fn header(bytes: &[u8]) -> (serde_json::Value, usize) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), 8 + n)
}

/// Swaps the dims of the first non-square 2-D tensor; the byte size stays the same, so only a
/// shape check can notice. `None` when there is no such tensor.
fn transpose_a_tensor(path: &Path) -> Option<()> {
    let bytes = std::fs::read(path).unwrap();
    let (mut h, start) = header(&bytes);
    let name = h.as_object()?.iter().find_map(|(k, v)| {
        let s = v["shape"].as_array()?;
        (s.len() == 2 && s[0] != s[1]).then(|| k.clone())
    })?;
    let shape = h[&name]["shape"].as_array()?.clone();
    h[&name]["shape"] = serde_json::json!([shape[1], shape[0]]);
    let mut text = serde_json::to_vec(&h).unwrap();
    while (text.len() + 8) % 8 != 0 {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[start..]);
    std::fs::write(path, out).unwrap();
    Some(())
}

fn variants(a: &Artifact) -> Vec<Variant> {
    let mut out = Vec::new();
    let files = loaded_files(a);
    for file in files {
        let base = Path::new(&file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let empty = std::fs::metadata(a.dir.join(&file)).is_ok_and(|m| m.len() == 0);
        let f = file.clone();
        out.extend((!empty).then(|| Variant {
            label: format!("truncated {file}"),
            names: base.clone(),
            apply: Box::new(move |d| {
                let p = d.join(&f);
                let len = std::fs::metadata(&p).unwrap().len();
                let file = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                file.set_len(len / 2).unwrap();
            }),
        }));
        if a.manifest || HF_REQUIRED.contains(&file.as_str()) {
            let f = file.clone();
            out.push(Variant {
                label: format!("missing {file}"),
                names: base.clone(),
                apply: Box::new(move |d| std::fs::remove_file(d.join(&f)).unwrap()),
            });
        }
        let f = file.clone();
        let manifest = a.manifest;
        out.push(Variant {
            label: format!("flipped byte in {file}"),
            names: base.clone(),
            apply: Box::new(move |d| {
                let p = d.join(&f);
                let mut bytes = std::fs::read(&p).unwrap();
                if bytes.is_empty() {
                    // Nothing to flip in an empty file: a stray byte instead.
                    std::fs::write(&p, b"x").unwrap();
                    return;
                }
                // Without a manifest only the structure can be checked: flip a header byte.
                let at = if !manifest && f.ends_with(".safetensors") {
                    12
                } else if !manifest {
                    0
                } else {
                    bytes.len() * 2 / 3
                };
                bytes[at] ^= 0x5a;
                std::fs::write(&p, bytes).unwrap();
            }),
        });
        if file.ends_with(".safetensors") {
            let f = file.clone();
            out.push(Variant {
                label: format!("wrong tensor shape in {file} (manifest resealed)"),
                names: base.clone(),
                apply: Box::new(move |d| {
                    transpose_a_tensor(&d.join(&f)).expect("a 2-D tensor to transpose");
                    if manifest {
                        reseal(d, &f);
                    }
                }),
            });
        }
        if !a.manifest {
            continue;
        }
        let f = file.clone();
        out.push(Variant {
            label: format!("manifest lies about {file}'s checksum"),
            names: base.clone(),
            apply: Box::new(move |d| {
                edit_manifest(d, |m| {
                    m["artifacts"][&f]["sha256"] = serde_json::json!("0".repeat(64));
                });
            }),
        });
        let f = file.clone();
        out.push(Variant {
            label: format!("{file} is a symlink to an identical file outside"),
            names: base.clone(),
            apply: Box::new(move |d| {
                let p = d.join(&f);
                let outside = d.with_extension(format!("outside-{}", f.replace('/', "_")));
                std::fs::copy(&p, &outside).unwrap();
                std::fs::remove_file(&p).unwrap();
                std::os::unix::fs::symlink(&outside, &p).unwrap();
            }),
        });
        if a.own_configs.contains(&file.as_str()) {
            let f = file.clone();
            out.push(Variant {
                label: format!("{file} from a future version (extra field, manifest resealed)"),
                names: base.clone(),
                apply: Box::new(move |d| {
                    let p = d.join(&f);
                    let mut v: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                    v["added_in_a_future_version"] = serde_json::json!(1);
                    if v.get("schema_version").is_some() {
                        v["schema_version"] = serde_json::json!(99);
                    }
                    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
                    reseal(d, &f);
                }),
            });
        }
    }
    if a.manifest {
        out.push(Variant {
            label: "manifest from a future schema version".into(),
            names: "manifest.json".into(),
            apply: Box::new(|d| edit_manifest(d, |m| m["schema_version"] = 99.into())),
        });
        out.push(Variant {
            label: "truncated manifest".into(),
            names: "manifest.json".into(),
            apply: Box::new(|d| {
                let p = d.join("manifest.json");
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
            }),
        });
    }
    out
}

/// Runs every (sampled) variant of `a`; returns how many were rejected as they should be.
fn campaign(a: &Artifact, work: &Path, sample: usize, seed: usize) -> usize {
    // The intact artifact loads.
    let intact = fill(&a.load, &a.dir);
    let o = lexforge(&intact.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{} intact: {}", a.name, stderr(&o));
    let mut rejected = 0;
    let mut failures = Vec::new();
    for (i, v) in variants(a).iter().enumerate() {
        if !(i + seed).is_multiple_of(sample) {
            continue;
        }
        let dir = work.join(format!("{}-{i}", a.name));
        copy_dir(&a.dir, &dir);
        (v.apply)(&dir);
        let args = fill(&a.load, &dir);
        let o = Command::new(env!("CARGO_BIN_EXE_lexforge"))
            .args(&args)
            .output()
            .unwrap();
        let err = stderr(&o);
        match o.status.code() {
            Some(1) if err.contains(&v.names) => rejected += 1,
            code => failures.push(format!(
                "{}: {} -> exit {code:?} (must be 1 naming {}): {}",
                a.name,
                v.label,
                v.names,
                err.trim()
            )),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    rejected
}

fn fill(args: &[String], dir: &Path) -> Vec<String> {
    args.iter()
        .map(|a| a.replace("{dir}", &dir.display().to_string()))
        .collect()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn every_damaged_artifact_is_refused_naming_the_file() {
    let sample = std::env::var("LEXFORGE_CORRUPT_SAMPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4usize)
        .max(1);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let b = books();
    let alice = b.join("lewis_carroll/alices_adventures_in_wonderland.txt");
    let roberta = repo().join("tests/fixtures/roberta_tiny/roberta");

    // The artifacts, each made by the CLI.
    let tok = t.join("tokenizer");
    cli_ok(&format!(
        "tokenizer train {} --out {} --method bpe --vocab-size 400",
        alice.display(),
        tok.display()
    ));
    let lm_config = t.join("lm.toml");
    std::fs::write(
        &lm_config,
        format!(
            "context = 16\n[corpus]\npaths = [\"{}\"]\n\
             [tokenizer.train]\nmethod = \"char\"\nvocab_size = 200\n[model]\ntype = \"gpt2\"\n\
             n_layer = 1\nn_head = 2\nn_embd = 16\n[train]\nmax_steps = 2\nbatch_size = 2\n\
             warmup_steps = 1\neval_every = 2\ncheckpoint_every = 2\n[samples]\nprompts = []\n",
            alice.display()
        ),
    )
    .unwrap();
    cli_ok(&format!(
        "lm train {} --out {}",
        lm_config.display(),
        t.join("lm").display()
    ));
    let dataset = t.join("dataset");
    let library = library(t);
    cli_ok(&format!(
        "prepare {} --out {} --encoder {} --chunk-size 3 --max-chunks-per-book 6 --pairs-per-book 8 --validation-fraction 0.2 --test-fraction 0.2",
        library.display(),
        dataset.display(),
        roberta.display()
    ));
    let matcher = t.join("matcher");
    let matcher_config = t.join("matcher.toml");
    std::fs::write(
        &matcher_config,
        format!(
            "base_model = \"{}\"\nmax_seq_length = 32\n[head]\nprojection_dim = 16\n\
             style_features = true\n[train]\nmax_steps = 2\nbatch_size = 4\nwarmup_steps = 1\n\
             eval_every = 2\ncheckpoint_every = 2\n",
            roberta.display()
        ),
    )
    .unwrap();
    cli_ok(&format!(
        "matcher train {} --out {} --config {}",
        dataset.display(),
        matcher.display(),
        matcher_config.display()
    ));
    let corpora = t.join("corpora.json");
    cli_ok(&format!(
        "semantic corpora {} --metadata {} --out {} --words-per-corpus 20",
        b.display(),
        b.join("../books.csv").display(),
        corpora.display()
    ));
    let semantic = t.join("semantic");
    let semantic_config = t.join("semantic.toml");
    std::fs::write(
        &semantic_config,
        "hidden_dim = 32\n[train]\nmax_steps = 4\nbatch_size = 8\nwarmup_steps = 1\n\
         eval_every = 4\ncheckpoint_every = 4\n",
    )
    .unwrap();
    cli_ok(&format!(
        "semantic train {} --out {} --config {}",
        corpora.display(),
        semantic.display(),
        semantic_config.display()
    ));
    let input = t.join("texts.txt");
    std::fs::write(&input, "a line of text\nanother one\n").unwrap();
    let npy = t.join("out.npy");

    let artifacts = [
        Artifact {
            name: "tokenizer",
            own_configs: &[],
            dir: tok,
            load: strings(&["tokenizer", "encode", "{dir}", "some text"]),
            manifest: true,
        },
        Artifact {
            name: "lm-run",
            own_configs: &[],
            dir: t.join("lm"),
            load: strings(&["lm", "score", "{dir}", "--text", "Alice was"]),
            manifest: true,
        },
        Artifact {
            name: "hf-encoder",
            own_configs: &[],
            dir: roberta,
            load: vec![
                "embed".into(),
                "{dir}".into(),
                "--input".into(),
                input.display().to_string(),
                "--out".into(),
                npy.display().to_string(),
            ],
            manifest: false,
        },
        Artifact {
            name: "matcher",
            own_configs: &[
                "head/config.json",
                "calibration.json",
                "style_calibration.json",
            ],
            dir: matcher.clone(),
            load: strings(&[
                "matcher",
                "score",
                "{dir}",
                "A passage.",
                "Another passage.",
            ]),
            manifest: true,
        },
        Artifact {
            name: "semantic-encoder",
            own_configs: &["config.json"],
            dir: semantic,
            load: strings(&["semantic", "encode", "{dir}", "sea", "ship", "storm"]),
            manifest: true,
        },
        Artifact {
            name: "dataset",
            own_configs: &[],
            dir: dataset,
            load: vec![
                "matcher".into(),
                "evaluate".into(),
                matcher.display().to_string(),
                "--dataset".into(),
                "{dir}".into(),
            ],
            manifest: true,
        },
    ];
    let work = t.join("variants");
    std::fs::create_dir_all(&work).unwrap();
    let mut total = 0;
    for (i, a) in artifacts.iter().enumerate() {
        let n = campaign(a, &work, sample, i);
        println!("corrupt {}: {n} damaged variants refused", a.name);
        assert!(n > 0, "{}: no variant ran", a.name);
        total += n;
    }
    println!("corrupt: {total} damaged variants refused in all");
}
