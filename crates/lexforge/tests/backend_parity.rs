//! Backend and precision parity: every compiled, usable backend computes, at every precision it
//! supports, what the default CPU backend computes in f32, within the tolerances below (the
//! table in `docs/backends.md`).
//!
//! A device's float precision is fixed once per process (burn configures a device before its
//! first tensor), so each (backend, precision) runs in a child process: this test binary again,
//! with `LEXFORGE_PARITY_CHILD=<backend>/<precision>`, which computes every case and writes its
//! numbers as JSON. The parent compares each child with the `cpu/f32` child and prints a table.
//! Which backends take part depends on the cargo features (`--features ndarray,wgpu`, see
//! `scripts/check-backends.sh`); the default build compares flex in f16 and bf16 with flex f32.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use lexforge::data::{Vectors, top_k_inner_product};
use lexforge::nn::bert::{BertConfig, BertModel};
use lexforge::nn::char_lstm::{CharLstm, CharLstmConfig};
use lexforge::nn::encoder::{BertSentenceEncoder, EncoderOptions, SentenceEncoder, find_minilm};
use lexforge::nn::gpt2::{Gpt2, Gpt2Config};
use lexforge::nn::pooling::{Pooling, pool};
use lexforge::semantic::{Fsq, Quantizer, QuantizerConfig, ResidualVq};
use lexforge::train::{
    BatchSource, BoxError, CheckpointDir, LossOutput, OptimizerConfig, Resume, TrainConfig,
    TrainContext, TrainModel, train,
};
use lexforge::{CancelToken, Device, DeviceSpec, NoopSink, Precision, Seed, backend_reports};
use serde::{Deserialize, Serialize};

const CHILD_ENV: &str = "LEXFORGE_PARITY_CHILD";
const OUT_ENV: &str = "LEXFORGE_PARITY_OUT";

/// One output of a case.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Output {
    /// Compared by `max |a - b| / max |reference|`. Non-finite values travel as `null`.
    Floats(#[serde(with = "nullable")] Vec<f32>),
    /// Discrete outputs (codes, neighbour indices), compared by the fraction that disagree.
    Codes(Vec<u32>),
    /// Values on a grid (quantized latents): the fraction off by more than 1% of the largest
    /// reference magnitude (a code that flipped), like [`Output::Codes`].
    Levels(#[serde(with = "nullable")] Vec<f32>),
}

mod nullable {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        let v: Vec<Option<f32>> = v.iter().map(|x| x.is_finite().then_some(*x)).collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let v = Vec::<Option<f32>>::deserialize(d)?;
        Ok(v.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect())
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ChildReport {
    device: String,
    /// Output name → values, or why the case failed (error or panic message).
    outputs: BTreeMap<String, Result<Output, String>>,
}

type CaseResult = Result<Vec<(&'static str, Output)>, String>;

/// A named case: computes its outputs on a device.
type Case = (&'static str, fn(&Device) -> CaseResult);

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Reads any float tensor back as f32, whatever precision it computed in.
fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, String> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| format!("{e:?}"))
}

/// A pseudo-random value in [-1, 1) that depends on the parameter number and element index only
/// (splitmix64 of both).
fn wave(k: usize, i: usize) -> f32 {
    let mut z = (k as u64) << 32 ^ i as u64;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// Overwrites every float parameter with deterministic values, in visit order: norm scales
/// near 1, biases near 0, matrices with rows of unit-ish norm. Keeps `require_grad`.
struct Fill {
    k: usize,
    path: Vec<String>,
}

impl ModuleMapper for Fill {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let k = self.k;
        self.k += 1;
        let norm_scale = D == 1 && matches!(self.path.last().map(String::as_str), Some("gamma"));
        param.map(|t| {
            let dims = t.dims();
            let n: usize = dims.iter().product();
            let scale = if D == 1 {
                0.1
            } else {
                1.0 / (dims[0] as f32).sqrt()
            };
            let values: Vec<f32> = (0..n)
                .map(|i| {
                    let u = wave(k, i) * scale;
                    if norm_scale { 1.0 + u } else { u }
                })
                .collect();
            let device = t.device();
            let grad = t.is_require_grad();
            let fresh = Tensor::<D>::from_data(TensorData::new(values, dims), &device);
            if grad { fresh.require_grad() } else { fresh }
        })
    }
}

fn fill<M: Module>(module: M) -> M {
    module.map(&mut Fill {
        k: 0,
        path: Vec::new(),
    })
}

/// Every float parameter's values (or gradient), in visit order.
struct Collect<'a> {
    grads: Option<&'a GradientsParams>,
    out: Vec<f32>,
    error: Option<String>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = match self.grads {
            Some(g) => match g.get::<D>(param.id) {
                Some(t) => t,
                None => return,
            },
            None => param.val(),
        };
        match host(t) {
            Ok(v) => self.out.extend(v),
            Err(e) => self.error = Some(e),
        }
    }
}

fn collect<M: Module>(module: &M, grads: Option<&GradientsParams>) -> Result<Vec<f32>, String> {
    let mut c = Collect {
        grads,
        out: Vec::new(),
        error: None,
    };
    module.visit(&mut c);
    match c.error {
        Some(e) => Err(e),
        None => Ok(c.out),
    }
}

/// `[batch, t]` token ids `< vocab` and the next-token targets.
fn ids(device: &Device, batch: usize, t: usize, vocab: usize) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let seq: Vec<i64> = (0..batch * (t + 1))
        .map(|i| ((i * 37 + i / 5 * 11 + 3) % vocab) as i64)
        .collect();
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    for b in 0..batch {
        let row = &seq[b * (t + 1)..(b + 1) * (t + 1)];
        inputs.extend_from_slice(&row[..t]);
        targets.extend_from_slice(&row[1..]);
    }
    (
        Tensor::from_data(TensorData::new(inputs, [batch, t]), device),
        Tensor::from_data(TensorData::new(targets, [batch, t]), device),
    )
}

/// Deterministic `[rows, dim]` values in [-1, 1].
fn matrix(rows: usize, dim: usize, salt: usize) -> Vec<f32> {
    (0..rows * dim).map(|i| wave(1000 + salt, i)).collect()
}

/// GPT-2: logits, loss, every gradient, and the parameters after one AdamW step.
fn gpt2(device: &Device) -> CaseResult {
    let config = Gpt2Config {
        resid_pdrop: 0.0,
        embd_pdrop: 0.0,
        attn_pdrop: 0.0,
        ..Gpt2Config::new(97, 32, 32, 2, 4)
    };
    let device = device.clone().autodiff();
    let model = fill(Gpt2::new(&config, &device).map_err(err)?);
    let (inputs, targets) = ids(&device, 2, 16, 97);
    let logits = model.forward(inputs).map_err(err)?;
    let [b, t, v] = logits.dims();
    let loss = lexforge::nn::fused::cross_entropy(
        logits.clone().reshape([b * t, v]),
        targets.reshape([b * t, 1]),
    )
    .map_err(err)?;
    let loss_value = host(loss.clone())?;
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let grad_values = collect(&model, Some(&grads))?;
    // Adam's first update is ±lr wherever |g| ≫ epsilon, so with PyTorch's 1e-8 a gradient
    // that is zero up to rounding (1e-10) moves its weight by ±lr on a coin flip of summation
    // order. 1e-6 keeps such weights still and leaves the real gradients' updates unchanged.
    let mut optimizer = OptimizerConfig {
        epsilon: 1e-6,
        ..OptimizerConfig::default()
    }
    .build()
    .map_err(err)?;
    let stepped = optimizer.step(1e-3, model, grads);
    Ok(vec![
        ("gpt2.logits", Output::Floats(host(logits)?)),
        ("gpt2.loss", Output::Floats(loss_value)),
        ("gpt2.grads", Output::Floats(grad_values)),
        ("gpt2.step", Output::Floats(collect(&stepped, None)?)),
    ])
}

/// Char-LSTM logits.
fn char_lstm(device: &Device) -> CaseResult {
    let model = fill(CharLstm::new(&CharLstmConfig::new(40, 16, 32, 2), device).map_err(err)?);
    let (inputs, _) = ids(device, 2, 24, 40);
    let (logits, _) = model.forward(inputs, None);
    Ok(vec![("char_lstm.logits", Output::Floats(host(logits)?))])
}

/// A small random BERT: hidden states and mean pooling over ragged rows.
fn bert(device: &Device) -> CaseResult {
    let model = fill(BertModel::new(&BertConfig::bert(100, 32, 2, 4), device).map_err(err)?);
    let rows: Vec<Vec<u32>> = (0..3)
        .map(|r| {
            (0..6 + 4 * r)
                .map(|i| ((i * 13 + r * 7 + 1) % 100) as u32)
                .collect()
        })
        .collect();
    let (hidden, lengths) = model.forward_ids(&rows, 0).map_err(err)?;
    let pooled = pool(hidden.clone(), &lengths, Pooling::Mean);
    Ok(vec![
        ("bert.hidden", Output::Floats(host(hidden)?)),
        ("bert.pooled", Output::Floats(host(pooled)?)),
    ])
}

/// The real all-MiniLM-L6-v2 sentence encoder (skipped, with a note, when not installed).
fn minilm(device: &Device) -> CaseResult {
    let Some(dir) = find_minilm() else {
        return Ok(Vec::new());
    };
    let encoder =
        BertSentenceEncoder::load(&dir, device, &EncoderOptions::default()).map_err(err)?;
    let texts = [
        "It was the best of times, it was the worst of times.",
        "Call me Ishmael.",
        "The quick brown fox jumps over the lazy dog, again and again, until it tires.",
    ];
    let embeddings = encoder.encode(&texts, 2).map_err(err)?;
    Ok(vec![(
        "minilm.embeddings",
        Output::Floats(embeddings.into_vec()),
    )])
}

/// FSQ and residual VQ (k-means initialized on the host): codes and quantized latents.
fn quantizers(device: &Device) -> CaseResult {
    let n = 64;
    let fsq = Fsq::new(vec![vec![8, 4]; 4]).map_err(err)?;
    let z = matrix(n, fsq.latent_dim(), 1);
    let zt = Tensor::<2>::from_data(TensorData::new(z, [n, fsq.latent_dim()]), device);
    let q = fsq.quantize(zt, 1.0).map_err(err)?;
    let rvq_config = QuantizerConfig::residual_vq_default();
    let dim = rvq_config.latent_dim();
    let latents = matrix(256, dim, 2);
    let rvq = ResidualVq::new(&rvq_config, device)
        .map_err(err)?
        .init_kmeans(&latents, Seed(7))
        .map_err(err)?;
    let zt = Tensor::<2>::from_data(
        TensorData::new(latents[..n * dim].to_vec(), [n, dim]),
        device,
    );
    let r = rvq.quantize(zt, 1.0).map_err(err)?;
    Ok(vec![
        ("fsq.codes", Output::Codes(q.codes)),
        ("fsq.latent", Output::Levels(host(q.latent)?)),
        ("rvq.codes", Output::Codes(r.codes)),
        ("rvq.latent", Output::Levels(host(r.latent)?)),
    ])
}

/// Blocked top-K inner-product search (hard-negative mining), blocks smaller than the data.
fn top_k(device: &Device) -> CaseResult {
    let dim = 24;
    let normalize = |mut v: Vec<f32>| {
        for row in v.chunks_mut(dim) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
            row.iter_mut().for_each(|x| *x /= norm);
        }
        v
    };
    let queries = normalize(matrix(50, dim, 3));
    let keys = normalize(matrix(120, dim, 4));
    let found = top_k_inner_product(
        Vectors {
            data: &queries,
            dim,
        },
        Vectors { data: &keys, dim },
        5,
        32,
        device,
        &|q, k| q == k,
    )
    .map_err(err)?;
    let indices = found
        .iter()
        .flatten()
        .map(|n| n.index as u32)
        .collect::<Vec<_>>();
    let scores = found.iter().flatten().map(|n| n.score).collect();
    Ok(vec![
        ("topk.indices", Output::Codes(indices)),
        ("topk.scores", Output::Floats(scores)),
    ])
}

const CASES: [Case; 6] = [
    ("gpt2", gpt2),
    ("char_lstm", char_lstm),
    ("bert", bert),
    ("minilm", minilm),
    ("quantizers", quantizers),
    ("topk", top_k),
];

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned())
}

/// The child: configure the device, run every case, write the report.
#[test]
fn child() {
    let (Ok(spec), Ok(out)) = (std::env::var(CHILD_ENV), std::env::var(OUT_ENV)) else {
        return; // Only meaningful when the parent runs it.
    };
    let (backend, precision) = spec.split_once('/').expect("backend/precision");
    let mut device = backend
        .parse::<DeviceSpec>()
        .and_then(|s| s.resolve())
        .expect("the parent only asks for usable backends");
    let precision: Precision = precision.parse().expect("a precision");
    precision.apply(&mut device).expect("a supported precision");
    let mut report = ChildReport {
        device: format!("{device:?}"),
        ..ChildReport::default()
    };
    for (case, run) in CASES {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&device)))
            .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(p.as_ref()))));
        match result {
            Ok(outputs) => {
                for (name, output) in outputs {
                    report.outputs.insert(name.to_owned(), Ok(output));
                }
            }
            Err(why) => {
                report.outputs.insert(format!("{case}.*"), Err(why));
            }
        }
    }
    std::fs::write(out, serde_json::to_vec(&report).unwrap()).unwrap();
}

fn run_child(backend: &str, precision: Precision, dir: &std::path::Path) -> ChildReport {
    let out = dir.join(format!("{backend}-{precision}.json"));
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{backend}/{precision}"))
        .env(OUT_ENV, &out)
        .status()
        .unwrap();
    assert!(status.success(), "{backend}/{precision} child failed");
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

/// The largest allowed error of `output` at `precision` on `backend`: relative to the largest
/// reference magnitude for floats, the fraction of disagreeing entries for codes.
///
/// f32 on another CPU backend or a GPU differs by summation order only. f16 has an 11-bit
/// significand (≈5e-4 relative rounding) and bf16 an 8-bit one (≈4e-3); errors grow with depth
/// (GPT-2's backward pass and AdamW step compound them). Discrete outputs flip where a value
/// sits within rounding error of a boundary: rare in f32, a few percent at reduced precision.
fn tolerance(output: &str, precision: Precision) -> f64 {
    let discrete = matches!(
        output,
        "fsq.codes" | "rvq.codes" | "topk.indices" | "fsq.latent" | "rvq.latent"
    );
    match (precision, discrete) {
        (Precision::F32 | Precision::Auto, false) => 1e-5,
        (Precision::F32 | Precision::Auto, true) => 0.0,
        (Precision::F16, false) => 1e-2,
        (Precision::Bf16, false) => 5e-2,
        (Precision::F16, true) => 0.05,
        (Precision::Bf16, true) => 0.1,
    }
}

/// Error of `got` against `reference` (see [`tolerance`]).
fn error(reference: &Output, got: &Output) -> Result<f64, String> {
    match (reference, got) {
        (Output::Floats(r), Output::Floats(g)) if r.len() == g.len() => {
            let scale = r.iter().fold(0f64, |m, x| m.max(f64::from(x.abs())));
            let worst = r
                .iter()
                .zip(g)
                .map(|(a, b)| {
                    if b.is_finite() {
                        f64::from((a - b).abs())
                    } else {
                        f64::INFINITY
                    }
                })
                .fold(0f64, f64::max);
            Ok(worst / scale.max(1e-12))
        }
        (Output::Levels(r), Output::Levels(g)) if r.len() == g.len() => {
            let scale = r.iter().fold(0f32, |m, x| m.max(x.abs()));
            let off = r
                .iter()
                .zip(g)
                .filter(|(a, b)| (*a - *b).abs().is_nan() || (*a - *b).abs() > 0.01 * scale)
                .count();
            Ok(off as f64 / r.len().max(1) as f64)
        }
        (Output::Codes(r), Output::Codes(g)) if r.len() == g.len() => {
            let differ = r.iter().zip(g).filter(|(a, b)| a != b).count();
            Ok(differ as f64 / r.len().max(1) as f64)
        }
        _ => Err("different shapes or kinds".to_owned()),
    }
}

#[test]
fn every_backend_and_precision_matches_the_cpu_in_f32() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reference = run_child("cpu", Precision::F32, dir.path());
    let failed_cases: Vec<_> = reference
        .outputs
        .iter()
        .filter_map(|(k, v)| v.as_ref().err().map(|e| format!("{k}: {e}")))
        .collect();
    assert!(failed_cases.is_empty(), "reference: {failed_cases:?}");
    if !reference.outputs.contains_key("minilm.embeddings") {
        eprintln!("note: all-MiniLM-L6-v2 not found; the minilm case was skipped");
    }
    let mut candidates = Vec::new();
    for report in backend_reports() {
        if !report.usable {
            eprintln!("{}: not compared ({})", report.name, report.detail);
            continue;
        }
        for precision in &report.precisions {
            if !(report.name == "flex" && *precision == Precision::F32) {
                candidates.push((report.name, *precision));
            }
        }
    }
    let mut rows = vec![
        "| backend | precision | output | error | tolerance | ok |".to_owned(),
        "|---|---|---|---|---|---|".to_owned(),
    ];
    let mut failures = Vec::new();
    for (backend, precision) in candidates {
        let got = run_child(backend, precision, dir.path());
        for (name, want) in &reference.outputs {
            let want = want.as_ref().unwrap();
            let tol = tolerance(name, precision);
            let (shown, ok) = match got.outputs.get(name) {
                Some(Ok(g)) => match error(want, g) {
                    Ok(e) => (format!("{e:.2e}"), e <= tol),
                    Err(why) => (why, false),
                },
                Some(Err(why)) => (why.clone(), false),
                None => {
                    let family = name.split('.').next().unwrap_or(name);
                    let why = got
                        .outputs
                        .get(&format!("{family}.*"))
                        .and_then(|r| r.as_ref().err().cloned())
                        .unwrap_or_else(|| "missing".to_owned());
                    (why, false)
                }
            };
            rows.push(format!(
                "| {backend} | {precision} | {name} | {shown} | {tol:.0e} | {} |",
                if ok { "yes" } else { "NO" }
            ));
            if !ok {
                failures.push(format!("{backend}/{precision} {name}: {shown} > {tol:.0e}"));
            }
        }
    }
    let table = rows.join("\n");
    println!("{table}");
    if let Some(path) = std::env::var_os("LEXFORGE_PARITY_TABLE") {
        std::fs::write(PathBuf::from(path), format!("{table}\n")).unwrap();
    }
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
}

/// GPT-2 as a trainable module, for the data-parallel test.
#[derive(Module, Debug)]
struct Lm {
    net: Gpt2,
}

type LmBatch = (Tensor<2, Int>, Tensor<2, Int>);

impl TrainModel for Lm {
    type Batch = LmBatch;
    fn loss(&self, batch: &LmBatch) -> Result<LossOutput, BoxError> {
        let logits = self.net.forward(batch.0.clone())?;
        let [b, t, v] = logits.dims();
        let loss = lexforge::nn::fused::cross_entropy(
            logits.reshape([b * t, v]),
            batch.1.clone().reshape([b * t, 1]),
        )?;
        Ok(LossOutput {
            loss,
            targets: b * t,
        })
    }
}

/// Windows of 16 tokens of a fixed pseudo-random text over 97 ids.
struct Windows {
    n: usize,
    offset: usize,
}

impl BatchSource<LmBatch> for Windows {
    fn len(&self) -> usize {
        self.n
    }
    fn batch(&self, indices: &[usize], device: &Device) -> Result<LmBatch, BoxError> {
        let t = 16;
        let token = |i: usize| ((wave(7, i) + 1.0) * 48.0) as i64 % 97;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for &w in indices {
            let start = (w + self.offset) * t;
            x.extend((start..start + t).map(token));
            y.extend((start + 1..start + t + 1).map(token));
        }
        let b = indices.len();
        Ok((
            Tensor::from_data(TensorData::new(x, [b, t]), device),
            Tensor::from_data(TensorData::new(y, [b, t]), device),
        ))
    }
}

fn train_lm(replicas: &[Device], accum: u32) -> Vec<f32> {
    let device = Device::flex().autodiff();
    let config = Gpt2Config {
        resid_pdrop: 0.0,
        embd_pdrop: 0.0,
        attn_pdrop: 0.0,
        ..Gpt2Config::new(97, 32, 32, 2, 4)
    };
    let model = Lm {
        net: fill(Gpt2::new(&config, &device).unwrap()),
    };
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = CheckpointDir::new(dir.path().join("checkpoints"), 1).unwrap();
    let train_config = TrainConfig {
        max_steps: 6,
        batch_size: 4,
        grad_accum_steps: accum,
        lr: 1e-2,
        warmup_steps: 0,
        eval_every: 6,
        checkpoint_every: 6,
        // See `gpt2`: keeps rounding-level gradients from flipping updates.
        optimizer: OptimizerConfig {
            epsilon: 1e-6,
            ..OptimizerConfig::default()
        },
        ..TrainConfig::default()
    };
    let ctx = TrainContext {
        run_id: "dp",
        kind: "test",
        device: &device,
        replicas,
        train: &Windows { n: 64, offset: 0 },
        valid: &Windows { n: 8, offset: 100 },
        checkpoints: &checkpoints,
        events: &NoopSink,
        cancel: &CancelToken::new(),
    };
    let out = train(&train_config, &ctx, model, Resume::Fresh).unwrap();
    assert_eq!(out.state.step, 6);
    collect(&out.model, None).unwrap()
}

/// Data parallelism: the engine's replica branch (a copy of the model per replica device,
/// micro-batches on a thread each, gradients summed on the main device) makes the same update
/// as one device accumulating the same micro-batches. The replica is ndarray (its own backend
/// and thread pool) when compiled in, else a second handle of flex, so the threaded branch
/// runs in every build, CI's included.
#[test]
fn data_parallel_on_two_cpu_devices_matches_one_device() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let (name, second) = match DeviceSpec::NdArray.resolve() {
        Ok(d) => ("ndarray", d.autodiff()),
        Err(_) => ("flex", DeviceSpec::Flex.resolve().unwrap().autodiff()),
    };
    let one = train_lm(&[], 2);
    let two = train_lm(&[second], 1);
    let diff = Output::Floats(one.clone());
    let err = error(&diff, &Output::Floats(two)).unwrap();
    println!("data parallel (flex + {name}) vs accumulation on flex: relative error {err:.2e}");
    assert!(err <= 1e-4, "{err}");
}

/// A precision a device does not compute in is a typed error that names the ones it does
/// (with `--features ndarray`: ndarray computes in f32 only).
#[test]
fn unsupported_precisions_are_typed_errors_naming_the_alternatives() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    for report in backend_reports().into_iter().filter(|r| r.usable) {
        let spec: DeviceSpec = report.name.parse().unwrap();
        let device = spec.resolve().unwrap();
        for p in [Precision::F32, Precision::F16, Precision::Bf16] {
            match p.resolve(&device) {
                Ok(got) => assert!(report.precisions.contains(&got), "{}: {p}", report.name),
                Err(lexforge::Error::UnsupportedPrecision { supported, .. }) => {
                    assert!(!report.precisions.contains(&p), "{}: {p}", report.name);
                    let listed: Vec<String> =
                        report.precisions.iter().map(|p| p.to_string()).collect();
                    assert_eq!(supported, listed.join(", "), "{}", report.name);
                    println!("{} {p}: refused, supported: {supported}", report.name);
                }
                Err(other) => panic!("{}: {p}: {other}", report.name),
            }
        }
    }
}
