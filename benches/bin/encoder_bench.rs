//! The Rust side of `benches/compare_encoder.py`: encodes a file of sentences with lexforge's
//! sentence encoder and prints JSON.
//!
//! ```sh
//! encoder-bench MODEL_DIR SENTENCES.txt BATCH_SIZE REPEAT [OUT.f32]
//! ```
//! Loads the model once, encodes all lines once as a warm-up, then `REPEAT` times; prints the
//! median seconds (of the warm-up when `REPEAT` is 0), sentences/s and the load time. With `OUT.f32`, writes the vectors (raw f32
//! LE, row-major) for the agreement check.

use std::process::ExitCode;
use std::time::Instant;

use lexforge::Device;
use lexforge::nn::encoder::{BertSentenceEncoder, EncoderOptions, SentenceEncoder};

#[path = "../../crates/lexforge-cli/src/alloc.rs"]
mod alloc;

type BoxError = Box<dyn std::error::Error>;

/// `encoder-bench profile B T`: milliseconds of each piece of a MiniLM-shaped layer
/// (d 384, 12 heads, inner 1536) at batch B, length T, inference.
fn profile(b: usize, t: usize) -> Result<serde_json::Value, BoxError> {
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Distribution, Tensor};
    use lexforge::nn::fused::{AttentionMask, attention_softmax, padding_mask};
    let d = Device::flex();
    let (e, h) = (384, 12);
    let hd = e / h;
    let x = Tensor::<3>::random([b, t, e], Distribution::Default, &d);
    let wide = Tensor::<3>::random([b, t, 4 * e], Distribution::Default, &d);
    let q = Tensor::<4>::random([b, h, t, hd], Distribution::Default, &d);
    let lengths: Vec<usize> = (0..b).map(|i| t - (i * t / (2 * b))).collect();
    let lin = burn::nn::LinearConfig::new(e, e).init(&d);
    let fc = burn::nn::LinearConfig::new(e, 4 * e).init(&d);
    let ln = burn::nn::LayerNormConfig::new(e).init(&d);
    let mut out = serde_json::Map::new();
    let mut time = |name: &str, f: &dyn Fn() -> f32| {
        let _ = f();
        let mut v = Vec::new();
        for _ in 0..7 {
            let t0 = Instant::now();
            let _ = f();
            v.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        v.sort_by(f64::total_cmp);
        out.insert(name.to_owned(), serde_json::json!(v[3]));
    };
    let first = |t: Tensor<3>| t.slice([0..1, 0..1, 0..1]).into_scalar::<f32>();
    let first4 = |t: Tensor<4>| t.slice([0..1, 0..1, 0..1, 0..1]).into_scalar::<f32>();
    time("linear d->d", &|| first(lin.forward(x.clone())));
    time("linear d->4d", &|| first(fc.forward(x.clone())));
    time("layernorm", &|| first(ln.forward(x.clone())));
    time("gelu (fused, erf)", &|| {
        first(lexforge::nn::fused::gelu(wide.clone()))
    });
    time("gelu (burn, erf)", &|| {
        first(burn::tensor::activation::gelu(wide.clone()))
    });
    time("attention (burn fused, mask)", &|| {
        let m = padding_mask(&lengths, b, t, &d);
        first4(attention(
            q.clone(),
            q.clone(),
            q.clone(),
            Some(m),
            None,
            AttentionModuleOptions::default(),
        ))
    });
    time("attention (matmul + fused softmax)", &|| {
        let w = attention_softmax(
            q.clone().matmul(q.clone().swap_dims(2, 3)),
            1.0 / (hd as f64).sqrt(),
            AttentionMask::Padding { lengths: &lengths },
        );
        first4(w.matmul(q.clone()))
    });
    time("split/merge heads", &|| {
        first(
            x.clone()
                .reshape([b, t, h, hd])
                .swap_dims(1, 2)
                .swap_dims(1, 2)
                .reshape([b, t, e])
                + 0.0,
        )
    });
    Ok(serde_json::Value::Object(out))
}

fn run(args: &[String]) -> Result<serde_json::Value, BoxError> {
    if let [mode, b, t] = args
        && mode == "profile"
    {
        return profile(b.parse()?, t.parse()?);
    }
    let [model, sentences, batch, repeat, rest @ ..] = args else {
        return Err(
            "usage: encoder-bench MODEL_DIR SENTENCES.txt BATCH_SIZE REPEAT [OUT.f32]".into(),
        );
    };
    let batch: usize = batch.parse()?;
    let repeat: usize = repeat.parse()?;
    let text = std::fs::read_to_string(sentences)?;
    let lines: Vec<&str> = text.lines().collect();
    let t0 = Instant::now();
    let enc = BertSentenceEncoder::load(model, &Device::flex(), &EncoderOptions::default())?;
    let load_s = t0.elapsed().as_secs_f64();
    let t_first = Instant::now();
    let first = enc.encode(&lines, batch)?;
    let mut times = vec![t_first.elapsed().as_secs_f64()];
    if repeat > 0 {
        times.clear();
    }
    for _ in 0..repeat {
        let t = Instant::now();
        let _ = enc.encode(&lines, batch)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    if let Some(out) = rest.first() {
        let bytes: Vec<u8> = first
            .as_slice()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(out, bytes)?;
    }
    Ok(serde_json::json!({
        "sentences": lines.len(),
        "seconds": median,
        "sentences_per_s": lines.len() as f64 / median,
        "load_s": load_s,
        "threads": rayon_threads(),
    }))
}

/// The compute pool's size (`RAYON_NUM_THREADS`; the bench scripts set it to the peer's thread
/// count).
fn rayon_threads() -> usize {
    rayon::current_num_threads()
}

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    lexforge_benches::report(run(&args))
}
