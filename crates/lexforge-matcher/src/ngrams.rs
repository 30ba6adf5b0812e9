//! Hashed character and word n-grams of a passage: the sparse input of the learned style
//! channel ([`crate::model::StyleChannel`]).
//!
//! A passage becomes a bag of features, each hashed (64-bit FNV-1a of a kind tag, `n` and the
//! n-gram) into one of `buckets` slots:
//! - **character n-grams** for `n` in `char_ngrams` over the text as written (case and
//!   punctuation kept: capitals, spelling and punctuation habits are style);
//! - **word n-grams** for `n` in `word_ngrams` over lower-cased tokens, where a token is a run
//!   of letters/digits or a single punctuation character (so `"; and"` is a bigram of its own).
//!
//! Each slot's weight is the sublinear term frequency `1 + ln(count)` times the slot's inverse
//! document frequency ([`NgramHasher::fit_idf`], on training passages), and the weights of a
//! passage are scaled to unit L2 norm: the same weighting as scikit-learn's
//! `TfidfVectorizer(sublinear_tf=True)`, so the channel starts as a random projection of a
//! TF-IDF vector and its cosine, and learns from there.
//!
//! Pure functions of the text and the fitted IDF: the same passage always gives the same
//! features.

use serde::{Deserialize, Serialize};

use crate::error::{MatcherError, Result};

/// What the style channel hashes and how wide it is. Saved in `head/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StyleChannelConfig {
    /// Hash slots (rows of the learned table). More slots, fewer collisions, more weights.
    pub buckets: usize,
    /// Width of the channel's vector.
    pub dim: usize,
    /// Smallest and largest character n-gram (`[1, 4]`); `[0, 0]` turns them off.
    pub char_ngrams: [usize; 2],
    /// Smallest and largest word n-gram (`[1, 2]`); `[0, 0]` turns them off.
    pub word_ngrams: [usize; 2],
    /// Learning-rate multiplier of the hashed table and the channel weights relative to the
    /// run's learning rate (their values are scaled by it in the forward pass, which, under
    /// Adam, multiplies their effective step size by the same factor).
    pub table_lr_scale: f64,
}

impl Default for StyleChannelConfig {
    fn default() -> Self {
        StyleChannelConfig {
            buckets: 1 << 16,
            dim: 128,
            char_ngrams: [1, 4],
            word_ngrams: [1, 2],
            table_lr_scale: 3.0,
        }
    }
}

impl StyleChannelConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// [`MatcherError::InvalidParameter`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |parameter, reason: String| Err(MatcherError::InvalidParameter { parameter, reason });
        if !(2..=(1 << 24)).contains(&self.buckets) {
            return bad(
                "style_channel.buckets",
                format!("{} must be between 2 and 2^24", self.buckets),
            );
        }
        if self.dim == 0 || self.dim > 4096 {
            return bad(
                "style_channel.dim",
                format!("{} must be between 1 and 4096", self.dim),
            );
        }
        for (name, [lo, hi]) in [
            ("style_channel.char_ngrams", self.char_ngrams),
            ("style_channel.word_ngrams", self.word_ngrams),
        ] {
            if (lo == 0) != (hi == 0) || lo > hi || hi > 8 {
                return bad(
                    name,
                    format!("[{lo}, {hi}] must be [0, 0] (off) or 1 <= min <= max <= 8"),
                );
            }
        }
        if self.char_ngrams == [0, 0] && self.word_ngrams == [0, 0] {
            return bad(
                "style_channel",
                "both char_ngrams and word_ngrams are off".to_owned(),
            );
        }
        if !(self.table_lr_scale.is_finite() && self.table_lr_scale > 0.0) {
            return bad(
                "style_channel.table_lr_scale",
                format!("{} must be positive and finite", self.table_lr_scale),
            );
        }
        Ok(())
    }
}

/// The hashed features of one passage: slots (ascending, distinct) and their weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseFeatures {
    /// Hash slots, ascending.
    pub ids: Vec<u32>,
    /// Weight of each slot (unit L2 norm over the passage once an IDF is applied).
    pub weights: Vec<f32>,
}

/// Hashes passages into [`SparseFeatures`] for a [`StyleChannelConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct NgramHasher {
    config: StyleChannelConfig,
    idf: Vec<f32>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Tokens for word n-grams: runs of alphanumerics (with inner apostrophes), or one
/// punctuation character; lower-cased.
fn word_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let inner_apostrophe = (c == '\'' || c == '’')
            && !cur.is_empty()
            && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
        if c.is_alphanumeric() || inner_apostrophe {
            cur.extend(c.to_lowercase());
            continue;
        }
        if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl NgramHasher {
    /// A hasher with every IDF weight 1 (call [`NgramHasher::fit_idf`] or
    /// [`NgramHasher::with_idf`] before use in a model).
    ///
    /// # Errors
    /// [`MatcherError::InvalidParameter`] from [`StyleChannelConfig::validate`].
    pub fn new(config: &StyleChannelConfig) -> Result<Self> {
        config.validate()?;
        Ok(NgramHasher {
            config: config.clone(),
            idf: vec![1.0; config.buckets],
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StyleChannelConfig {
        &self.config
    }

    /// The IDF weight of every slot.
    pub fn idf(&self) -> &[f32] {
        &self.idf
    }

    /// Replaces the IDF weights (as saved with a model).
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] when the length is not `buckets` or a weight is not
    /// finite and positive.
    pub fn with_idf(mut self, idf: Vec<f32>) -> Result<Self> {
        if idf.len() != self.config.buckets {
            return Err(MatcherError::InvalidInput {
                reason: format!(
                    "{} IDF weights for {} style-channel buckets",
                    idf.len(),
                    self.config.buckets
                ),
            });
        }
        if let Some(i) = idf.iter().position(|w| !(w.is_finite() && *w > 0.0)) {
            return Err(MatcherError::InvalidInput {
                reason: format!("IDF weight {i} is {}, not a positive number", idf[i]),
            });
        }
        self.idf = idf;
        Ok(self)
    }

    /// Fits the IDF weights on `texts` (smoothed, as scikit-learn:
    /// `ln((1 + n) / (1 + df)) + 1`).
    pub fn fit_idf(&mut self, texts: &[&str]) {
        let mut df = vec![0u32; self.config.buckets];
        for t in texts {
            for id in self.counts(t).into_iter().map(|(id, _)| id) {
                df[id as usize] += 1;
            }
        }
        let n = texts.len() as f64;
        self.idf = df
            .iter()
            .map(|&d| (((1.0 + n) / (1.0 + f64::from(d))).ln() + 1.0) as f32)
            .collect();
    }

    /// Raw counts of each slot of `text`, ascending by slot.
    fn counts(&self, text: &str) -> Vec<(u32, u32)> {
        let buckets = self.config.buckets as u64;
        let mut slots: Vec<u32> = Vec::new();
        let [clo, chi] = self.config.char_ngrams;
        if clo > 0 {
            let mut bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            bounds.push(text.len());
            let chars = bounds.len() - 1;
            for n in clo..=chi {
                let seed = fnv(FNV_OFFSET, &[b'c', n as u8]);
                for s in 0..chars.saturating_sub(n - 1) {
                    let h = fnv(seed, &text.as_bytes()[bounds[s]..bounds[s + n]]);
                    slots.push((h % buckets) as u32);
                }
            }
        }
        let [wlo, whi] = self.config.word_ngrams;
        if wlo > 0 {
            let tokens = word_tokens(text);
            for n in wlo..=whi {
                let seed = fnv(FNV_OFFSET, &[b'w', n as u8]);
                for window in tokens.windows(n) {
                    let mut h = seed;
                    for (k, t) in window.iter().enumerate() {
                        if k > 0 {
                            h = fnv(h, b" ");
                        }
                        h = fnv(h, t.as_bytes());
                    }
                    slots.push((h % buckets) as u32);
                }
            }
        }
        slots.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::new();
        for s in slots {
            match out.last_mut() {
                Some((id, c)) if *id == s => *c += 1,
                _ => out.push((s, 1)),
            }
        }
        out
    }

    /// The weighted, unit-norm features of `text` (empty for a text with no n-gram).
    pub fn features(&self, text: &str) -> SparseFeatures {
        let counts = self.counts(text);
        let mut ids = Vec::with_capacity(counts.len());
        let mut weights = Vec::with_capacity(counts.len());
        for (id, c) in counts {
            ids.push(id);
            weights.push((1.0 + (c as f32).ln()) * self.idf[id as usize]);
        }
        let norm = weights.iter().map(|w| w * w).sum::<f32>().sqrt();
        if norm > 0.0 {
            for w in &mut weights {
                *w /= norm;
            }
        }
        SparseFeatures { ids, weights }
    }
}

/// Cosine of two passages' sparse features (both unit-norm): the untrained channel's target.
pub fn sparse_cosine(a: &SparseFeatures, b: &SparseFeatures) -> f32 {
    let (mut i, mut j, mut s) = (0, 0, 0.0f32);
    while i < a.ids.len() && j < b.ids.len() {
        match a.ids[i].cmp(&b.ids[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                s += a.weights[i] * b.weights[j];
                i += 1;
                j += 1;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_punctuation_and_inner_apostrophes() {
        assert_eq!(
            word_tokens("Don't go; 'tis late—Mr. Bennet!"),
            [
                "don't", "go", ";", "'", "tis", "late", "—", "mr", ".", "bennet", "!"
            ]
        );
    }

    #[test]
    fn features_are_deterministic_unit_norm_and_sorted() {
        let h = NgramHasher::new(&StyleChannelConfig::default()).unwrap();
        let a = h.features("It is a truth universally acknowledged, that a single man…");
        assert_eq!(
            a,
            h.features("It is a truth universally acknowledged, that a single man…")
        );
        assert!(a.ids.windows(2).all(|w| w[0] < w[1]));
        let norm: f32 = a.weights.iter().map(|w| w * w).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!((sparse_cosine(&a, &a) - 1.0).abs() < 1e-5);
        assert!(h.features("").ids.is_empty());
        // Multi-byte characters hash by whole characters.
        assert!(!h.features("é—ü").ids.is_empty());
    }

    #[test]
    fn idf_downweights_what_every_text_shares() {
        let mut h = NgramHasher::new(&StyleChannelConfig {
            char_ngrams: [0, 0],
            word_ngrams: [1, 1],
            ..StyleChannelConfig::default()
        })
        .unwrap();
        let texts = ["the cat sat", "the dog ran", "the owl flew"];
        h.fit_idf(&texts);
        let f = h.features("the cat");
        let slot = |w: &str| h.counts(w)[0].0;
        let w_of = |s| f.weights[f.ids.iter().position(|&i| i == s).unwrap()];
        assert!(w_of(slot("the")) < w_of(slot("cat")));
        // Stylistically close texts are closer than unrelated ones.
        let a = h.features("the cat sat");
        let b = h.features("the cat ran");
        let c = h.features("an owl flew");
        assert!(sparse_cosine(&a, &b) > sparse_cosine(&a, &c));
    }

    #[test]
    fn bad_configs_and_idf_are_typed() {
        for c in [
            StyleChannelConfig {
                buckets: 1,
                ..StyleChannelConfig::default()
            },
            StyleChannelConfig {
                dim: 0,
                ..StyleChannelConfig::default()
            },
            StyleChannelConfig {
                char_ngrams: [3, 2],
                ..StyleChannelConfig::default()
            },
            StyleChannelConfig {
                char_ngrams: [0, 0],
                word_ngrams: [0, 0],
                ..StyleChannelConfig::default()
            },
            StyleChannelConfig {
                table_lr_scale: f64::NAN,
                ..StyleChannelConfig::default()
            },
        ] {
            assert!(matches!(
                NgramHasher::new(&c),
                Err(MatcherError::InvalidParameter { .. })
            ));
        }
        let h = NgramHasher::new(&StyleChannelConfig::default()).unwrap();
        assert!(h.clone().with_idf(vec![1.0; 3]).is_err());
        let mut bad = vec![1.0; StyleChannelConfig::default().buckets];
        bad[5] = f32::NAN;
        assert!(h.with_idf(bad).is_err());
    }
}
