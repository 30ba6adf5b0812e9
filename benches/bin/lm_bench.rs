//! The Rust side of `benches/compare_lm.py`: times GPT-2 and char-LSTM training steps and
//! KV-cache generation with lexforge directly (no Python) and prints JSON.
//!
//! ```sh
//! lm-bench gpt2-train   N_LAYER N_HEAD N_EMBD CONTEXT BATCH VOCAB STEPS
//! lm-bench lstm-train   D_EMBED D_HIDDEN N_LAYERS CONTEXT BATCH VOCAB STEPS
//! lm-bench gpt2-generate N_LAYER N_HEAD N_EMBD CONTEXT VOCAB PROMPT_LEN NEW_TOKENS REPEAT
//! lm-bench ops                  # diagnostics: single-op timings at the quickstart's shapes
//! lm-bench loss ROWS VOCAB      # cross-entropy forms, forward/backward time and gradient check
//! lm-bench matmul M K N         # GFLOP/s of one [M,K]x[K,N] product
//! lm-bench bmm B H T D          # GFLOP/s of attention-shaped batched products
//! lm-bench profile B T D H      # forward/backward ms of each GPT-2 component (autodiff)
//! lm-bench lstm-layer T B H     # forward/backward ms of one whole-sequence LSTM layer op
//! ```
//! A training step is what the engine does: forward, cross-entropy, backward, global-norm
//! clipping, AdamW. The first step (warm-up) is not timed; the JSON has the median step time,
//! tokens/s, and a breakdown of one extra step into forward / backward / optimizer.

use std::process::ExitCode;
use std::time::Instant;

use burn::tensor::FloatDType;
use lexforge::Device;
use lexforge::data::LmBatch;
use lexforge::lm::{CharLstmLm, Gpt2Lm};
use lexforge::nn::char_lstm::{CharLstm, CharLstmConfig};
use lexforge::nn::generate::{GenerateConfig, generate};
use lexforge::nn::gpt2::{Gpt2, Gpt2Config};
use lexforge::train::{OptimizerConfig, TrainModel, cast_params, clip_global_norm};

#[path = "../../crates/lexforge-cli/src/alloc.rs"]
mod alloc;

type BoxError = Box<dyn std::error::Error>;

fn batch(b: usize, t: usize, vocab: usize, step: usize, device: &Device) -> LmBatch {
    use burn::tensor::{Int, Tensor, TensorData};
    let ids: Vec<i64> = (0..b * (t + 1))
        .map(|i| ((i * 7919 + step * 104_729) % vocab) as i64)
        .collect();
    let mut inputs = Vec::with_capacity(b * t);
    let mut targets = Vec::with_capacity(b * t);
    for r in 0..b {
        let row = &ids[r * (t + 1)..(r + 1) * (t + 1)];
        inputs.extend_from_slice(&row[..t]);
        targets.extend_from_slice(&row[1..]);
    }
    LmBatch {
        inputs: Tensor::<2, Int>::from_data(TensorData::new(inputs, [b, t]), device),
        targets: Tensor::<2, Int>::from_data(TensorData::new(targets, [b, t]), device),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn train_bench<M: TrainModel<Batch = LmBatch>>(
    mut model: M,
    device: &Device,
    b: usize,
    t: usize,
    vocab: usize,
    steps: usize,
) -> Result<serde_json::Value, BoxError> {
    let mut optim = OptimizerConfig::default().build()?;
    // Reduced precision as the engine does it: f32 master weights, each step computes with a
    // copy cast to the device's precision; gradients flow back to the f32 weights.
    let compute = device.settings().float_dtype;
    let mixed = compute != FloatDType::F32;
    if mixed {
        model = cast_params(model, FloatDType::F32, true);
    }
    let mut times = Vec::new();
    let mut parts = (0.0, 0.0, 0.0);
    for step in 0..=steps + 1 {
        let x = batch(b, t, vocab, step, device);
        let t0 = Instant::now();
        let out = if mixed {
            cast_params(model.clone(), compute, false).loss(&x)
        } else {
            model.loss(&x)
        }
        .map_err(|e| e.to_string())?;
        let loss = out.loss;
        let _ = loss.clone().into_scalar::<f32>();
        let t1 = Instant::now();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        let (grads, _) = clip_global_norm(&model, grads, Some(1.0));
        let t2 = Instant::now();
        model = optim.step(1e-3, model, grads);
        device.sync().map_err(|e| format!("{e:?}"))?;
        let t3 = Instant::now();
        match step {
            0 => {}
            s if s == steps + 1 => {
                parts = (
                    (t1 - t0).as_secs_f64(),
                    (t2 - t1).as_secs_f64(),
                    (t3 - t2).as_secs_f64(),
                )
            }
            _ => times.push((t3 - t0).as_secs_f64()),
        }
    }
    let step_s = median(times);
    Ok(serde_json::json!({
        "step_seconds": step_s,
        "tokens_per_s": (b * t) as f64 / step_s,
        "forward_loss_s": parts.0,
        "backward_clip_s": parts.1,
        "optimizer_s": parts.2,
        // The compute pool's size (`RAYON_NUM_THREADS`; the bench scripts set it to the
        // peer's thread count).
        "threads": rayon::current_num_threads(),
        "precision": format!("{compute:?}"),
    }))
}

fn run(args: &[String]) -> Result<serde_json::Value, BoxError> {
    let n = |i: usize| -> Result<usize, BoxError> { Ok(args[i].parse()?) };
    // `LEXFORGE_DEVICE=cuda` (any device spec; default flex) runs there, and
    // `LEXFORGE_PRECISION=bf16` (or f16) trains in that precision (mixed, f32 master weights).
    let mut plain = match std::env::var("LEXFORGE_DEVICE") {
        Ok(spec) => spec.parse::<lexforge::DeviceSpec>()?.resolve()?,
        Err(_) => Device::flex(),
    };
    if let Ok(p) = std::env::var("LEXFORGE_PRECISION") {
        p.parse::<lexforge::Precision>()?.apply(&mut plain)?;
    }
    let device = plain.autodiff();
    device.seed(0);
    match args.first().map(String::as_str) {
        Some("gpt2-train") if args.len() == 8 => {
            let config = gpt2_config(n(1)?, n(2)?, n(3)?, n(4)?, n(6)?);
            let model = Gpt2Lm {
                net: Gpt2::new(&config, &device)?,
            };
            train_bench(model, &device, n(5)?, n(4)?, n(6)?, n(7)?)
        }
        Some("lstm-train") if args.len() == 8 => {
            let config = CharLstmConfig::new(n(6)?, n(1)?, n(2)?, n(3)?);
            let model = CharLstmLm {
                net: CharLstm::new(&config, &device)?,
            };
            train_bench(model, &device, n(5)?, n(4)?, n(6)?, n(7)?)
        }
        Some("lstm-layer") if args.len() == 4 => {
            use burn::tensor::{Distribution, Tensor};
            use lexforge::nn::char_lstm::sequence::lstm_sequence;
            let (t, b, h) = (n(1)?, n(2)?, n(3)?);
            let normal = Distribution::Normal(0.0, 0.5);
            let zx = Tensor::<3>::random([t, b, 4 * h], normal, &device).require_grad();
            let w = Tensor::<2>::random([h, 4 * h], normal, &device).require_grad();
            let (h0, c0) = (
                Tensor::<2>::zeros([b, h], &device),
                Tensor::<2>::zeros([b, h], &device),
            );
            let v = Tensor::<3>::random([t + 1, b, h], normal, &device);
            let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
            for _ in 0..6 {
                let t0 = Instant::now();
                let y = lstm_sequence(zx.clone(), w.clone(), h0.clone(), c0.clone());
                let loss = (y * v.clone()).sum();
                let _ = loss.clone().into_scalar::<f32>();
                let t1 = Instant::now();
                let grads = loss.backward();
                let _ = w.grad(&grads).map(|g| g.sum().into_scalar::<f32>());
                fwd.push((t1 - t0).as_secs_f64() * 1e3);
                bwd.push(t1.elapsed().as_secs_f64() * 1e3);
            }
            Ok(serde_json::json!({"forward_ms": median(fwd), "backward_ms": median(bwd)}))
        }
        Some("gpt2-generate") if args.len() == 9 => {
            let plain = Device::flex();
            let config = gpt2_config(n(1)?, n(2)?, n(3)?, n(4)?, n(5)?);
            let model = Gpt2::new(&config, &plain)?;
            let vocab = n(5)?;
            let prompt: Vec<u32> = (0..n(6)?).map(|i| (i * 31 % vocab) as u32).collect();
            let gen_config = GenerateConfig {
                max_new_tokens: n(7)?,
                temperature: 0.0,
                stop_on_eos: false,
                ..GenerateConfig::default()
            };
            let decode = |_: &[u32]| String::new();
            let mut times = Vec::new();
            for _ in 0..=n(8)? {
                let t0 = Instant::now();
                let out = generate(&model, &prompt, &gen_config, &decode)?;
                times.push((t0.elapsed().as_secs_f64(), out[0].tokens_generated));
            }
            times.remove(0);
            let secs = median(times.iter().map(|t| t.0).collect());
            Ok(serde_json::json!({
                "seconds": secs,
                "tokens_per_s": times[0].1 as f64 / secs,
            }))
        }
        Some("ops") => {
            use burn::tensor::activation::{log_softmax, softmax};
            use burn::tensor::{Bool, Distribution, Int, Tensor};
            let d = Device::flex();
            let time = |name: &str, f: &dyn Fn() -> f32| {
                let _ = f();
                let t0 = Instant::now();
                for _ in 0..5 {
                    let _ = f();
                }
                println!("{name:<28} {:>8.2} ms", t0.elapsed().as_secs_f64() * 200.0);
            };
            let x3 = Tensor::<3>::random([16, 128, 128], Distribution::Default, &d);
            let w = Tensor::<2>::random([128, 384], Distribution::Default, &d);
            time("matmul3d x[16,128,128]@w", &|| {
                x3.clone().matmul(w.clone().unsqueeze()).sum().into_scalar()
            });
            let x2 = Tensor::<2>::random([2048, 128], Distribution::Default, &d);
            time("matmul2d [2048,128]@w", &|| {
                x2.clone().matmul(w.clone()).sum().into_scalar()
            });
            let lin = burn::nn::LinearConfig::new(128, 384).init(&d);
            time("Linear fwd [16,128,128]", &|| {
                lin.forward(x3.clone()).sum().into_scalar()
            });
            let q = Tensor::<4>::random([16, 4, 128, 32], Distribution::Default, &d);
            time("bmm q@k^T [16,4,128,32]", &|| {
                q.clone()
                    .matmul(q.clone().swap_dims(2, 3))
                    .sum()
                    .into_scalar()
            });
            let s4 = Tensor::<4>::random([16, 4, 128, 128], Distribution::Default, &d);
            time("softmax [16,4,128,128]", &|| {
                softmax(s4.clone(), 3).sum().into_scalar()
            });
            time("mask_fill tril", &|| {
                let m = Tensor::<2, Bool>::tril_mask([128, 128], 0, &d).reshape([1, 1, 128, 128]);
                s4.clone()
                    .mask_fill(m, f32::NEG_INFINITY)
                    .sum()
                    .into_scalar()
            });
            time("swap_dims+reshape", &|| {
                q.clone()
                    .swap_dims(1, 2)
                    .reshape([16, 128, 128])
                    .sum()
                    .into_scalar()
            });
            let g = Tensor::<3>::random([16, 128, 512], Distribution::Default, &d);
            time("powf3 [16,128,512]", &|| {
                g.clone().powf_scalar(3.0).sum().into_scalar()
            });
            time("x*x*x [16,128,512]", &|| {
                (g.clone() * g.clone() * g.clone()).sum().into_scalar()
            });
            time("tanh [16,128,512]", &|| {
                g.clone().tanh().sum().into_scalar()
            });
            let ln = burn::nn::LayerNormConfig::new(128).init(&d);
            time("layernorm [16,128,128]", &|| {
                ln.forward(x3.clone()).sum().into_scalar()
            });
            let logits = Tensor::<2>::random([2048, 4000], Distribution::Default, &d);
            time("log_softmax [2048,4000]", &|| {
                log_softmax(logits.clone(), 1).sum().into_scalar()
            });
            let tgt = Tensor::<2, Int>::zeros([2048, 1], &d);
            time("gather [2048,4000]", &|| {
                logits.clone().gather(1, tgt.clone()).sum().into_scalar()
            });
            let emb = burn::nn::EmbeddingConfig::new(4000, 128).init(&d);
            let ids = Tensor::<2, Int>::zeros([16, 128], &d);
            time("embedding [16,128]", &|| {
                emb.forward(ids.clone()).sum().into_scalar()
            });
            time("x3 sum only", &|| x3.clone().sum().into_scalar());
            Ok(serde_json::json!({}))
        }
        Some("loss") if args.len() == 3 => {
            use burn::tensor::activation::log_softmax;
            use burn::tensor::{Distribution, Int, Tensor, TensorData};
            let d = Device::flex().autodiff();
            let (rows, v) = (n(1)?, n(2)?);
            let logits = Tensor::<2>::random([rows, v], Distribution::Default, &d).require_grad();
            let ids: Vec<i64> = (0..rows).map(|i| (i * 31 % v) as i64).collect();
            let tgt = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, 1]), &d);
            let time = |name: &str, f: &dyn Fn() -> Tensor<1>| {
                let mut fwd = 0.0;
                let mut bwd = 0.0;
                for _ in 0..3 {
                    let t0 = Instant::now();
                    let l = f();
                    let _ = l.clone().into_scalar::<f32>();
                    let t1 = Instant::now();
                    let _ = l.backward();
                    fwd += (t1 - t0).as_secs_f64() / 3.0;
                    bwd += t1.elapsed().as_secs_f64() / 3.0;
                }
                println!(
                    "{name:<14} fwd {:>7.1} ms  bwd {:>7.1} ms",
                    fwd * 1e3,
                    bwd * 1e3
                );
            };
            time("log_softmax", &|| {
                log_softmax(logits.clone(), 1)
                    .gather(1, tgt.clone())
                    .mean()
                    .neg()
                    .reshape([1])
            });
            time("logsumexp", &|| {
                let m = logits.clone().detach().max_dim(1);
                let lse = (logits.clone() - m.clone()).exp().sum_dim(1).log() + m;
                (lse - logits.clone().gather(1, tgt.clone()))
                    .mean()
                    .reshape([1])
            });
            let a = log_softmax(logits.clone(), 1)
                .gather(1, tgt.clone())
                .mean()
                .neg();
            let ga = logits.grad(&a.backward()).ok_or("no grad a")?;
            let m = logits.clone().detach().max_dim(1);
            let lse = (logits.clone() - m.clone()).exp().sum_dim(1).log() + m;
            let b = (lse - logits.clone().gather(1, tgt.clone())).mean();
            let gb = logits.grad(&b.backward()).ok_or("no grad b")?;
            let diff = (ga - gb.clone()).abs().max().into_scalar::<f32>();
            let norm = gb.clone().abs().sum().into_scalar::<f32>();
            println!("max |grad diff| = {diff}, sum |grad| = {norm}");
            Ok(serde_json::json!({}))
        }
        Some("bmm") if args.len() == 5 => {
            // Attention-shaped batched products [B, H, T, D]: GFLOP/s of each layout the
            // forward and backward passes use.
            use burn::tensor::{Distribution, Tensor};
            let plain = Device::flex();
            let (b, h, t, dh) = (n(1)?, n(2)?, n(3)?, n(4)?);
            let q = Tensor::<4>::random([b, h, t, dh], Distribution::Default, &plain);
            let k = Tensor::<4>::random([b, h, t, dh], Distribution::Default, &plain);
            let s = Tensor::<4>::random([b, h, t, t], Distribution::Default, &plain);
            let flops = 2.0 * (b * h * t * t * dh) as f64;
            let mut out = serde_json::Map::new();
            let kt = Tensor::<4>::random([b, h, dh, t], Distribution::Default, &plain);
            let cases: [(&str, &dyn Fn() -> Tensor<4>); 6] = [
                ("q@k^T", &|| q.clone().matmul(k.clone().swap_dims(2, 3))),
                ("q@kt (contiguous)", &|| q.clone().matmul(kt.clone())),
                ("(k@q^T)^T", &|| {
                    k.clone().matmul(q.clone().swap_dims(2, 3)).swap_dims(2, 3)
                }),
                ("s@v", &|| s.clone().matmul(k.clone())),
                ("s^T@q", &|| s.clone().swap_dims(2, 3).matmul(q.clone())),
                ("s@q (k contiguous)", &|| s.clone().matmul(q.clone())),
            ];
            for (name, f) in cases {
                let mut times = Vec::new();
                for _ in 0..7 {
                    let t0 = Instant::now();
                    let c = f();
                    let _ = c.slice([0..1, 0..1, 0..1, 0..1]).into_scalar::<f32>();
                    times.push(t0.elapsed().as_secs_f64());
                }
                let secs = median(times);
                out.insert(
                    name.into(),
                    serde_json::json!({"ms": secs * 1e3, "gflops": flops / secs / 1e9}),
                );
            }
            Ok(serde_json::Value::Object(out))
        }
        Some("profile") if args.len() == 5 => {
            // Forward + backward (autodiff) of each GPT-2 component at [B, T, D] with H heads,
            // one line each: where a training step spends its time.
            use burn::tensor::activation::{sigmoid, softmax};
            use burn::tensor::{Bool, Distribution, Int, Tensor};
            let d = Device::flex().autodiff();
            let (b, t, e, h) = (n(1)?, n(2)?, n(3)?, n(4)?);
            let hd = e / h;
            let time = |name: &str, f: &dyn Fn() -> (f64, f64)| {
                let _ = f();
                let (mut fw, mut bw) = (Vec::new(), Vec::new());
                for _ in 0..5 {
                    let (a, c) = f();
                    fw.push(a);
                    bw.push(c);
                }
                println!(
                    "{name:<32} fwd {:>8.2} ms   bwd {:>8.2} ms",
                    median(fw) * 1e3,
                    median(bw) * 1e3
                );
            };
            fn run<const D: usize>(x: Tensor<D>, f: &dyn Fn(Tensor<D>) -> Tensor<D>) -> (f64, f64) {
                let x = x.require_grad();
                let t0 = Instant::now();
                let y = f(x.clone()).sum();
                let _ = y.clone().into_scalar::<f32>();
                let fw = t0.elapsed().as_secs_f64();
                let t1 = Instant::now();
                let g = y.backward();
                let _ = x.grad(&g).map(|g| g.sum().into_scalar::<f32>());
                (fw, t1.elapsed().as_secs_f64())
            }
            let x = Tensor::<3>::random([b, t, e], Distribution::Default, &d);
            let wide = Tensor::<3>::random([b, t, 4 * e], Distribution::Default, &d);
            let q4 = Tensor::<4>::random([b, h, t, hd], Distribution::Default, &d);
            let s4 = Tensor::<4>::random([b, h, t, t], Distribution::Default, &d);
            time("gelu_new [b,t,4e]", &|| {
                run(wide.clone(), &|x| {
                    let c2 = 2.0 * (2.0 / std::f64::consts::PI).sqrt();
                    let cube = x.clone() * x.clone() * x.clone();
                    x.clone() * sigmoid((x + cube * 0.044715) * c2)
                })
            });
            time("fused gelu_new [b,t,4e]", &|| {
                run(wide.clone(), &|x| lexforge::nn::fused::gelu_new(x))
            });
            time("x*y [b,t,4e]", &|| run(wide.clone(), &|x| x.clone() * x));
            time("x+1 [b,t,4e]", &|| run(wide.clone(), &|x| x + 1.0));
            time("sigmoid [b,t,4e]", &|| run(wide.clone(), &|x| sigmoid(x)));
            time("exp [b,t,4e]", &|| run(wide.clone(), &|x| x.exp()));
            let ln = burn::nn::LayerNormConfig::new(e).init(&d);
            time("layernorm [b,t,e]", &|| run(x.clone(), &|x| ln.forward(x)));
            let lin = burn::nn::LinearConfig::new(e, 3 * e).init(&d);
            time("linear e->3e", &|| {
                run(x.clone(), &|x| {
                    let y = lin.forward(x);
                    y.narrow(2, 0, e)
                })
            });
            let fc = burn::nn::LinearConfig::new(e, 4 * e).init(&d);
            time("linear e->4e", &|| {
                run(x.clone(), &|x| fc.forward(x).narrow(2, 0, e))
            });
            time("q@k^T", &|| {
                run(q4.clone(), &|q| {
                    q.clone().matmul(q.swap_dims(2, 3)).narrow(3, 0, hd)
                })
            });
            time("scale+mask+softmax [b,h,t,t]", &|| {
                run(s4.clone(), &|s| {
                    let mask =
                        Tensor::<2, Bool>::tril_mask([t, t], 0, &s.device()).reshape([1, 1, t, t]);
                    softmax((s / 8.0).mask_fill(mask, f32::NEG_INFINITY), 3)
                })
            });
            time("fused attention_softmax", &|| {
                run(s4.clone(), &|s| {
                    use lexforge::nn::fused::{AttentionMask, attention_softmax};
                    attention_softmax(s, 0.125, AttentionMask::Causal { past: 0 })
                })
            });
            time("softmax [b,h,t,t]", &|| run(s4.clone(), &|s| softmax(s, 3)));
            time("split heads + merge", &|| {
                run(x.clone(), &|x| {
                    x.reshape([b, t, h, hd])
                        .swap_dims(1, 2)
                        .swap_dims(1, 2)
                        .reshape([b, t, e])
                        * 1.0
                })
            });
            let vocab = 8000;
            let logits = Tensor::<2>::random([b * t, vocab], Distribution::Default, &d);
            let tgt = Tensor::<2, Int>::zeros([b * t, 1], &d);
            time("logsumexp CE [bt,8000]", &|| {
                run(logits.clone(), &|l| {
                    let max = l.clone().detach().max_dim(1);
                    let lse = (l.clone() - max.clone()).exp().sum_dim(1).log() + max;
                    (lse - l.gather(1, tgt.clone())).mean().reshape([1, 1])
                })
            });
            time("fused cross_entropy [bt,8000]", &|| {
                run(logits.clone(), &|l| {
                    lexforge::nn::fused::cross_entropy(l, tgt.clone())
                        .map(|l| l.reshape([1, 1]))
                        .unwrap_or_else(|e| panic!("{e}"))
                })
            });
            let wte = Tensor::<2>::random([vocab, e], Distribution::Default, &d);
            let x2 = Tensor::<2>::random([b * t, e], Distribution::Default, &d);
            time("lm head [bt,e]x[e,8000]", &|| {
                run(x2.clone(), &|x| {
                    x.matmul(wte.clone().transpose()).narrow(1, 0, e)
                })
            });
            Ok(serde_json::json!({}))
        }
        Some("matmul") if args.len() == 4 => {
            use burn::tensor::{Distribution, Tensor};
            let plain = Device::flex();
            let a = Tensor::<2>::random([n(1)?, n(2)?], Distribution::Default, &plain);
            let b = Tensor::<2>::random([n(2)?, n(3)?], Distribution::Default, &plain);
            let mut times = Vec::new();
            for _ in 0..5 {
                let t0 = Instant::now();
                let c = a.clone().matmul(b.clone());
                let _ = c.sum().into_scalar::<f32>();
                times.push(t0.elapsed().as_secs_f64());
            }
            let secs = median(times);
            let flops = 2.0 * (n(1)? * n(2)? * n(3)?) as f64;
            Ok(serde_json::json!({"seconds": secs, "gflops": flops / secs / 1e9}))
        }
        _ => Err("usage: see the module documentation of benches/bin/lm_bench.rs".into()),
    }
}

fn gpt2_config(layers: usize, heads: usize, embd: usize, ctx: usize, vocab: usize) -> Gpt2Config {
    let mut c = Gpt2Config::new(vocab, ctx, embd, layers, heads);
    // Dropout off in both implementations: it measures the arithmetic, not the RNG.
    c.resid_pdrop = 0.0;
    c.embd_pdrop = 0.0;
    c.attn_pdrop = 0.0;
    c
}

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    lexforge_benches::report(run(&args))
}
