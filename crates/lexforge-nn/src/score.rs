//! Scoring text with a causal LM: loss, perplexity, per-token surprisal and top-k predictions.

use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};
use crate::generate::CausalLm;

/// The score of one token (every token but the first, which nothing predicts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenScore {
    /// Position in the sequence (1-based in effect: position 0 is never scored).
    pub position: usize,
    /// The token id.
    pub id: u32,
    /// `-log2 p(token | previous tokens)`.
    pub surprisal_bits: f64,
    /// The `top_k` most likely tokens at this position with their probabilities, most likely
    /// first.
    pub top_k: Vec<(u32, f32)>,
}

/// The score of a sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceScore {
    /// Tokens predicted (`len - 1`).
    pub predicted: usize,
    /// Mean cross-entropy in nats per predicted token.
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Per predicted token.
    pub tokens: Vec<TokenScore>,
}

/// Scores `ids` (at least two tokens). Longer than the model's context, it is scored in
/// windows advancing by half the context, each position predicted with at least half a
/// context of history (the usual sliding-window perplexity).
pub fn score<M: CausalLm>(model: &M, ids: &[u32], top_k: usize) -> Result<SequenceScore> {
    if ids.len() < 2 {
        return Err(NnError::InvalidInput {
            reason: format!("scoring needs at least 2 tokens, got {}", ids.len()),
        });
    }
    let ctx = model.max_positions().unwrap_or(ids.len()).max(2);
    let stride = (ctx / 2).max(1);
    let mut tokens = Vec::with_capacity(ids.len() - 1);
    let mut next_to_score = 1;
    let mut start = 0;
    while next_to_score < ids.len() {
        let end = (start + ctx).min(ids.len());
        let lp = model.log_probs(&ids[start..end])?;
        for pos in next_to_score.max(start + 1)..end {
            let row = &lp[pos - start - 1];
            let id = ids[pos];
            let Some(&l) = row.get(id as usize) else {
                return Err(NnError::InvalidInput {
                    reason: format!("token id {id} is outside the vocabulary of {}", row.len()),
                });
            };
            let mut best: Vec<(u32, f32)> = Vec::new();
            if top_k > 0 {
                let mut order: Vec<usize> = (0..row.len()).collect();
                let k = top_k.min(row.len());
                order.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
                order.truncate(k);
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                best = order
                    .into_iter()
                    .map(|i| (i as u32, row[i].exp()))
                    .collect();
            }
            tokens.push(TokenScore {
                position: pos,
                id,
                surprisal_bits: -f64::from(l) / std::f64::consts::LN_2,
                top_k: best,
            });
        }
        next_to_score = end;
        if end == ids.len() {
            break;
        }
        start += stride;
    }
    let nats: f64 = tokens
        .iter()
        .map(|t| t.surprisal_bits * std::f64::consts::LN_2)
        .sum();
    let loss = nats / tokens.len() as f64;
    Ok(SequenceScore {
        predicted: tokens.len(),
        loss,
        perplexity: loss.exp(),
        tokens,
    })
}
