//! Text generation for any causal language model: greedy, temperature, top-k, top-p, EOS and
//! stop sequences matched on decoded text, several sequences in one batch, seeded.

use lexforge_core::Seed;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

/// A model that predicts the next token, one step at a time.
///
/// # Design
/// Implemented by GPT-2 (KV cache) and the char-LSTM (hidden state); called by [`generate`]
/// and by scoring. `prefill` feeds the same prompt to `batch` rows and returns the logits of
/// its last position; `step` feeds one token per row. Logits come back to the host as
/// `[batch][vocab]` rows: sampling is cheap next to the forward pass.
pub trait CausalLm {
    /// The per-sequence state (KV cache, LSTM state).
    type State;

    /// Longest sequence (prompt + generated) the model takes, if bounded.
    fn max_positions(&self) -> Option<usize>;

    /// Feeds `prompt` to `batch` identical rows; returns the state and the last position's
    /// logits per row.
    fn prefill(&self, prompt: &[u32], batch: usize) -> Result<(Self::State, Vec<Vec<f32>>)>;

    /// Feeds one token per row; returns the next logits per row.
    fn step(&self, state: &mut Self::State, tokens: &[u32]) -> Result<Vec<Vec<f32>>>;

    /// Feeds one token per row; returns each row's most likely next token (greedy decoding:
    /// the first of equal maxima). A model may pick on its device and read back only the ids;
    /// the default reads the logits back and picks on the host.
    fn step_argmax(&self, state: &mut Self::State, tokens: &[u32]) -> Result<Vec<u32>> {
        Ok(self
            .step(state, tokens)?
            .iter()
            .map(|l| argmax(l))
            .collect())
    }

    /// Log-probabilities (natural log) of the next token at every position of `ids` (one
    /// sequence that fits the context): `[ids.len()][vocab]`.
    fn log_probs(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>>;
}

/// How to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateConfig {
    /// New tokens at most, 1..=512.
    pub max_new_tokens: usize,
    /// 0 = greedy (argmax); otherwise logits are divided by it before sampling.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (0 < p <= 1).
    pub top_p: Option<f32>,
    /// Stop a sequence when it produces `eos_token_id`.
    pub stop_on_eos: bool,
    /// The end-of-sequence id.
    pub eos_token_id: Option<u32>,
    /// Stop a sequence when its decoded text contains one of these (also across token
    /// boundaries); the text is cut before the match.
    pub stop_sequences: Vec<String>,
    /// Sampling seed: the same seed gives the same outputs.
    pub seed: u64,
    /// Sequences to return, 1..=10, generated as one batch.
    pub num_return_sequences: usize,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            max_new_tokens: 64,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            stop_on_eos: true,
            eos_token_id: None,
            stop_sequences: Vec::new(),
            seed: 0,
            num_return_sequences: 1,
        }
    }
}

impl GenerateConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(NnError::InvalidInput { reason });
        if !(1..=512).contains(&self.max_new_tokens) {
            return bad(format!(
                "max_new_tokens {} is not in 1..=512",
                self.max_new_tokens
            ));
        }
        if !(1..=10).contains(&self.num_return_sequences) {
            return bad(format!(
                "num_return_sequences {} is not in 1..=10",
                self.num_return_sequences
            ));
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(format!("temperature {} must be >= 0", self.temperature));
        }
        if self.top_k == Some(0) {
            return bad("top_k must be at least 1".to_owned());
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return bad(format!("top_p {p} is not in (0, 1]"));
        }
        if self.stop_sequences.iter().any(String::is_empty) {
            return bad("a stop sequence is empty".to_owned());
        }
        Ok(())
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It produced the EOS token.
    Eos,
    /// Its text reached a stop sequence.
    StopSequence,
    /// It reached `max_new_tokens`.
    MaxTokens,
    /// It reached the model's context length.
    ContextFull,
}

/// One generated sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The generated text (prompt excluded; cut before a stop sequence; EOS not included).
    pub text: String,
    /// The generated ids (EOS included when it ended the sequence).
    pub token_ids: Vec<u32>,
    /// How many tokens were generated.
    pub tokens_generated: usize,
    /// Why it ended.
    pub finish: FinishReason,
}

/// The index of the largest logit (the first of equal maxima; 0 when none is a number).
fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |best, (i, &l)| {
            if l > best.1 { (i, l) } else { best }
        })
        .0 as u32
}

/// Picks the next token from `logits` per `config`; `rng` is used only when sampling.
pub fn pick(logits: &[f32], config: &GenerateConfig, rng: &mut impl Rng) -> u32 {
    if config.temperature == 0.0 {
        return argmax(logits);
    }
    let mut order: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    if order.is_empty() {
        return argmax(logits);
    }
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if let Some(k) = config.top_k {
        order.truncate(k.max(1));
    }
    let max = logits[order[0]];
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| f64::from((logits[i] - max) / config.temperature).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(top_p) = config.top_p {
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if acc >= f64::from(top_p) {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
        order.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let r: f64 = rng.random();
    let mut acc = 0.0;
    for (i, p) in probs.iter().enumerate() {
        acc += p;
        if r < acc {
            return order[i] as u32;
        }
    }
    order[order.len() - 1] as u32
}

/// What the model gave for the next position: logits per row, or (greedy) the picked ids.
enum Upcoming {
    Logits(Vec<Vec<f32>>),
    Ids(Vec<u32>),
}

/// Generates `config.num_return_sequences` continuations of `prompt` in one batch. `decode`
/// turns ids into text (for stop sequences and the returned text).
///
/// Sequence `i` samples from its own stream `Seed(config.seed).derive("generate/{i}")`, so a
/// sequence does not depend on how many others run beside it.
pub fn generate<M: CausalLm>(
    model: &M,
    prompt: &[u32],
    config: &GenerateConfig,
    decode: &dyn Fn(&[u32]) -> String,
) -> Result<Vec<Generation>> {
    config.validate()?;
    if prompt.is_empty() {
        return Err(NnError::InvalidInput {
            reason: "the prompt is empty (give at least one token, e.g. BOS/EOS)".to_owned(),
        });
    }
    if let Some(max) = model.max_positions()
        && prompt.len() >= max
    {
        return Err(NnError::InvalidInput {
            reason: format!(
                "the prompt has {} tokens; the context holds {max}, leaving no room to generate",
                prompt.len()
            ),
        });
    }
    let n = config.num_return_sequences;
    let mut rngs: Vec<_> = (0..n)
        .map(|i| Seed(config.seed).rng(&format!("generate/{i}")))
        .collect();
    let (mut state, logits) = model.prefill(prompt, n)?;
    // Greedy decoding needs only each row's best token: after the prompt, the model picks it
    // (on its device when it can) instead of sending every logit back.
    let greedy = config.temperature == 0.0;
    let mut upcoming = Upcoming::Logits(logits);
    let mut ids: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut done: Vec<Option<FinishReason>> = vec![None; n];
    let mut texts: Vec<Option<String>> = vec![None; n];
    let mut position = prompt.len();
    loop {
        let next: Vec<u32> = (0..n)
            .map(|i| match done[i] {
                Some(_) => config.eos_token_id.unwrap_or(0),
                None => match &upcoming {
                    Upcoming::Logits(l) => pick(&l[i], config, &mut rngs[i]),
                    Upcoming::Ids(ids) => ids[i],
                },
            })
            .collect();
        position += 1;
        for i in 0..n {
            if done[i].is_some() {
                continue;
            }
            ids[i].push(next[i]);
            if config.stop_on_eos && Some(next[i]) == config.eos_token_id {
                done[i] = Some(FinishReason::Eos);
                continue;
            }
            if !config.stop_sequences.is_empty() {
                let text = decode(&ids[i]);
                if let Some(cut) = config
                    .stop_sequences
                    .iter()
                    .filter_map(|s| text.find(s.as_str()))
                    .min()
                {
                    texts[i] = Some(text[..cut].to_owned());
                    done[i] = Some(FinishReason::StopSequence);
                    continue;
                }
            }
            if ids[i].len() >= config.max_new_tokens {
                done[i] = Some(FinishReason::MaxTokens);
            } else if model.max_positions().is_some_and(|m| position >= m) {
                done[i] = Some(FinishReason::ContextFull);
            }
        }
        if done.iter().all(Option::is_some) {
            break;
        }
        upcoming = if greedy {
            Upcoming::Ids(model.step_argmax(&mut state, &next)?)
        } else {
            Upcoming::Logits(model.step(&mut state, &next)?)
        };
    }
    Ok((0..n)
        .map(|i| {
            let finish = done[i].unwrap_or(FinishReason::MaxTokens);
            let text = texts[i].take().unwrap_or_else(|| {
                let body = if finish == FinishReason::Eos {
                    &ids[i][..ids[i].len() - 1]
                } else {
                    &ids[i][..]
                };
                decode(body)
            });
            Generation {
                text,
                tokens_generated: ids[i].len(),
                token_ids: std::mem::take(&mut ids[i]),
                finish,
            }
        })
        .collect())
}
