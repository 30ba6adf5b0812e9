//! Train → files → load → generate / score / evaluate; cancel → resume.

use std::sync::Mutex;

use lexforge_core::{
    CancelToken, Device, Event, EventRecord, EventSink, RunStatus, verify_run_dir,
};
use lexforge_lm::{CharLstmSpec, LanguageModel, ModelConfig, resume, train};
use lexforge_nn::generate::GenerateConfig;
use lexforge_train::StopReason;

use crate::{cpu, gpt2_config, train_in};

#[derive(Default)]
struct Collect {
    events: Mutex<Vec<Event>>,
    cancel_at: Option<(u64, CancelToken)>,
}

impl EventSink for Collect {
    fn emit(&self, record: &EventRecord) -> lexforge_core::Result<()> {
        if let (Event::Progress { step, .. }, Some((at, token))) = (&record.event, &self.cancel_at)
            && step >= at
        {
            token.cancel();
        }
        self.events.lock().unwrap().push(record.event.clone());
        Ok(())
    }
}

#[test]
fn gpt2_trains_evaluates_generates_and_scores() {
    let _g = crate::serial();
    let out = tempfile::tempdir().unwrap();
    let config = gpt2_config();
    let sink = Collect::default();
    let report = train_in(&config, &out.path().join("gpt2"), &sink).unwrap();
    assert_eq!(
        (report.status, report.stop, report.steps),
        (RunStatus::Completed, StopReason::MaxSteps, 200)
    );
    let dir = out.path().join("gpt2");
    let manifest = verify_run_dir(&dir).unwrap();
    assert_eq!(manifest.status, RunStatus::Completed);
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer/tokenizer.json",
        "eval/metrics.json",
        "eval/samples.jsonl",
        "data/train.tokens",
        "data/validation.tokens",
    ] {
        assert!(
            manifest.artifacts.keys().any(|k| k.as_str() == f),
            "{f} not in the manifest"
        );
    }
    assert!(dir.join("events.jsonl").exists() && dir.join("checkpoints/best/state.json").exists());

    let m = &report.metrics;
    for key in [
        "val_loss",
        "val_perplexity",
        "val_bits_per_token",
        "val_bits_per_char",
        "unigram_entropy",
    ] {
        assert!(m[key].is_finite() && m[key] > 0.0, "{key} = {}", m[key]);
    }
    // It learned: the training loss fell well below its start and the validation loss is far
    // below uniform. (Beating the unigram baseline on a held-out book of another genre takes
    // a bigger model and more steps than a test should spend: the quickstart test asserts it.)
    let losses: Vec<f64> = sink
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Progress { metrics, .. } => Some(metrics["loss"]),
            _ => None,
        })
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (losses[0], mean(&losses[losses.len() - 4..]));
    assert!(
        last < first - 0.5,
        "training loss {first} -> {last}: {losses:?}"
    );
    assert!(m["val_loss"] < (600f64).ln() - 0.5, "{m:?}");
    let ratio = m["val_bits_per_char"] / m["val_bits_per_token"];
    assert!(
        ratio > 0.1 && ratio < 1.0,
        "BPE tokens span several characters: {ratio}"
    );

    let events = sink.events.lock().unwrap();
    assert!(matches!(events.first(), Some(Event::Started { .. })));
    assert!(matches!(events.last(), Some(Event::Completed { .. })));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Eval { .. }))
            .count(),
        4
    );
    drop(events);
    let logged = lexforge_core::JsonlSink::read_all(&dir.join("events.jsonl")).unwrap();
    assert!(matches!(
        logged.last().map(|r| &r.event),
        Some(Event::Completed { .. })
    ));

    let samples = std::fs::read_to_string(dir.join("eval/samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 2);

    let lm = LanguageModel::load(&dir, &Device::flex()).unwrap();
    let cfg = GenerateConfig {
        max_new_tokens: 10,
        temperature: 0.9,
        top_k: Some(20),
        seed: 5,
        num_return_sequences: 3,
        ..GenerateConfig::default()
    };
    let a = lm.generate("The king", &cfg).unwrap();
    let b = lm.generate("The king", &cfg).unwrap();
    assert_eq!(a, b, "same seed, same outputs");
    assert_eq!(a.len(), 3);
    let greedy = GenerateConfig {
        temperature: 0.0,
        ..cfg.clone()
    };
    let g = lm.generate("The king", &greedy).unwrap();
    assert!(
        g.windows(2).all(|w| w[0].text == w[1].text),
        "greedy rows agree"
    );

    let text = "Friends, Romans, countrymen, lend me your ears.";
    let s = lm.score(text, 3).unwrap();
    assert!(s.loss.is_finite() && s.bits_per_char > 0.0);
    let rebuilt: String = s.tokens.iter().map(|t| &text[t.start..t.end]).collect();
    // Byte-level BPE offsets leave out the space a token carries; everything else is covered,
    // in order, starting with the first token.
    assert_eq!(rebuilt, text.replace(' ', ""));
    assert_eq!(s.tokens[0].start, 0);
    assert!(s.tokens.windows(2).all(|w| w[0].end <= w[1].start));
    assert!(
        s.tokens
            .iter()
            .all(|t| t.top_k.len() == 3 && t.top_k[0].2 >= t.top_k[1].2)
    );
    let e = lm.evaluate(&[text, "It was the best of times."]).unwrap();
    assert!(e.bits_per_char > 0.0 && e.tokens > 10);
}

#[test]
fn char_lstm_cancels_then_resumes_to_the_end() {
    let _g = crate::serial();
    let out = tempfile::tempdir().unwrap();
    let mut config = gpt2_config();
    config.tokenizer.train = Some(
        serde_json::from_value(serde_json::json!({"method": "char", "vocab_size": 120})).unwrap(),
    );
    config.model = ModelConfig::CharLstm(CharLstmSpec {
        d_embed: 16,
        d_hidden: 48,
        n_layers: 2,
        dropout: 0.1,
    });
    config.train.max_steps = 20;
    let cancel = CancelToken::new();
    let sink = Collect {
        cancel_at: Some((7, cancel.clone())),
        ..Collect::default()
    };
    let report = train(&config, &out.path().join("lstm"), &cpu(), &sink, &cancel).unwrap();
    assert_eq!(
        (report.status, report.stop),
        (RunStatus::Cancelled, StopReason::Cancelled)
    );
    assert!(report.steps >= 7 && report.steps < 20);
    let dir = out.path().join("lstm");
    assert_eq!(verify_run_dir(&dir).unwrap().status, RunStatus::Cancelled);
    assert!(!dir.join("model.safetensors").exists());

    let resumed = resume(&dir, &cpu(), None, &Collect::default(), &CancelToken::new()).unwrap();
    assert_eq!((resumed.status, resumed.steps), (RunStatus::Completed, 20));
    let m = &resumed.metrics;
    assert!(
        m["val_bits_per_char"] > 0.0
            && (m["val_bits_per_char"] - m["val_bits_per_token"]).abs()
                < 0.2 * m["val_bits_per_token"],
        "a char model: bits/char ≈ bits/token: {m:?}"
    );
    let lm = LanguageModel::load(&dir, &Device::flex()).unwrap();
    assert_eq!(lm.model().backend(), "char_lstm");
    let out = lm
        .generate(
            "Th",
            &GenerateConfig {
                max_new_tokens: 15,
                seed: 1,
                ..GenerateConfig::default()
            },
        )
        .unwrap();
    assert_eq!(out[0].tokens_generated, 15);
}

#[test]
fn a_run_killed_while_preparing_resumes_to_the_same_model() {
    let _g = crate::serial();
    let out = tempfile::tempdir().unwrap();
    let mut config = gpt2_config();
    config.train.max_steps = 4;
    config.train.warmup_steps = 1;
    config.train.eval_every = 2;
    config.train.checkpoint_every = 2;
    let sink = Collect::default();
    train_in(&config, &out.path().join("prep"), &sink).unwrap();
    let dir = out.path().join("prep");
    let reference = std::fs::read(dir.join("model.safetensors")).unwrap();
    // What a kill after the tokenizer was saved (and before the corpus summary) leaves: the
    // manifest, the tokenizer directory, a staging directory of an earlier attempt.
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !["manifest.json", "tokenizer", "tokenizer.json"].contains(&name.as_str()) {
            let p = entry.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }
    std::fs::create_dir(dir.join(".tokenizer.partial-1-0")).unwrap();
    // The manifest as preparation starts it: running, nothing recorded yet.
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["status"] = serde_json::json!("running");
    m["artifacts"] = serde_json::json!({});
    m["metrics"] = serde_json::json!({});
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let resumed = resume(&dir, &cpu(), None, &Collect::default(), &CancelToken::new()).unwrap();
    assert_eq!((resumed.status, resumed.steps), (RunStatus::Completed, 4));
    assert!(
        std::fs::read(dir.join("model.safetensors")).unwrap() == reference,
        "the same weights as the run that was never stopped"
    );
    assert!(!dir.join(".tokenizer.partial-1-0").exists());
    verify_run_dir(&dir).unwrap();
}
