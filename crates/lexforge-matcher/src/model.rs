//! The bi-encoder: a BERT-family body, pooling, optional style features, a projection head,
//! an optional learned style channel, an optional symmetric pair head and an optional topic
//! adversary.
//!
//! ```text
//! text ─ tokens ─ BertModel ─ pool ─┬─ [style features] ─ head ─ L2 ─ a ─┐
//!                                                                       ├─ [w_a·a ; w_s·s] ─ L2 ─ u
//! text ─ hashed n-grams (TF-IDF) ─ table ─ style_head ─ L2 ─ s ─────────┘   (style channel)
//!
//! pair score(u, v) = scale · cos(u, v) + bias  [+ pair_head(|u − v|, u ∘ v)]
//! topic adversary:   topic_head(grad_reverse(u))
//! ```
//!
//! With the style channel, `cos(u, v) = (w_a² cos(a, a') + w_s² cos(s, s')) / (w_a² + w_s²)`:
//! a learned mix of a topic-heavy sentence-embedding similarity and a character / word n-gram
//! similarity, each channel learned too (`w = exp(mix)`).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use lexforge_nn::bert::BertModel;
use lexforge_nn::pooling::{Pooling, pool};
use serde::{Deserialize, Serialize};

use crate::error::{MatcherError, Result};
use crate::losses::grad_reverse;
use crate::ngrams::{NgramHasher, SparseFeatures, StyleChannelConfig};
use crate::style::{STYLE_DIM, style_features};

/// The parts of the bi-encoder beyond its body, saved as `head/config.json`.
///
/// Fields missing from a config file take [`HeadConfig::unset`] values, where every optional
/// part is off: TOML has no null, so a projection written nowhere must mean "no projection",
/// or a config with none would not survive a round trip through TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default = "HeadConfig::unset", deny_unknown_fields)]
pub struct HeadConfig {
    /// Output dimension of the projection head; `None`: no head (the pooled vector is the
    /// embedding, and style features are refused).
    pub projection_dim: Option<usize>,
    /// Concatenate hand-made style features (sentence and word lengths, type-token ratio,
    /// punctuation and function-word rates) to the pooled vector before the head.
    pub style_features: bool,
    /// Add a learned term on `[|u − v|, u ∘ v]` to the pair score.
    pub pair_features: bool,
    /// Topic classes of the adversary (`None`: no adversary).
    pub topics: Option<usize>,
    /// The learned style channel over hashed character and word n-grams (`None`: off).
    pub style_channel: Option<StyleChannelConfig>,
    /// Initial multiplier of the cosine in the pair score (learned).
    pub init_scale: f64,
    /// Initial cosine at which the pair score is 0 (learned through the bias).
    pub init_shift: f64,
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig {
            projection_dim: Some(256),
            style_features: false,
            pair_features: false,
            topics: None,
            style_channel: None,
            init_scale: 20.0,
            init_shift: 0.5,
        }
    }
}

impl HeadConfig {
    /// The values of fields a config file leaves out: no projection, no adversary, otherwise
    /// the defaults.
    pub fn unset() -> Self {
        HeadConfig {
            projection_dim: None,
            ..HeadConfig::default()
        }
    }

    /// Checks the values against the body's hidden size.
    ///
    /// # Errors
    /// [`MatcherError::InvalidParameter`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |parameter, reason: &str| {
            Err(MatcherError::InvalidParameter {
                parameter,
                reason: reason.to_owned(),
            })
        };
        if self.projection_dim == Some(0) {
            return bad("projection_dim", "must be at least 1 when given");
        }
        if self.style_features && self.projection_dim.is_none() {
            return bad(
                "style_features",
                "needs a projection head (projection_dim) to mix them into the embedding",
            );
        }
        if matches!(self.topics, Some(k) if k < 2) {
            return bad("topics", "an adversary needs at least 2 topic classes");
        }
        if let Some(c) = &self.style_channel {
            c.validate()?;
        }
        if !(self.init_scale.is_finite() && self.init_scale > 0.0) {
            return bad("init_scale", "must be positive and finite");
        }
        if !self.init_shift.is_finite() {
            return bad("init_shift", "must be finite");
        }
        Ok(())
    }
}

/// The model's inputs for a batch of texts, all on the host.
#[derive(Debug, Clone, Default)]
pub struct TokenBatch {
    /// Token ids of each text (special tokens included, truncated).
    pub ids: Vec<Vec<u32>>,
    /// Style features of each text (row-major `[n, STYLE_DIM]`), when the head uses them.
    pub style: Option<Vec<f32>>,
    /// Hashed n-gram features of each text, when the model has a style channel.
    pub ngrams: Option<Vec<SparseFeatures>>,
    /// The body's pooled output of each text (row-major `[n, hidden]`), computed ahead when
    /// the body is entirely frozen: the body then does not run again for these texts.
    pub pooled: Option<Vec<f32>>,
}

impl TokenBatch {
    /// Texts' token ids with their style features computed when `style` is set.
    pub fn new(ids: Vec<Vec<u32>>, texts: Option<&[&str]>) -> Self {
        let style = texts.map(|t| t.iter().flat_map(|s| style_features(s)).collect());
        TokenBatch {
            ids,
            style,
            ..TokenBatch::default()
        }
    }

    /// Attaches the n-gram features of the texts (see [`BiEncoder::ngram_features`]).
    pub fn with_ngrams(mut self, ngrams: Option<Vec<SparseFeatures>>) -> Self {
        self.ngrams = ngrams;
        self
    }

    /// Number of texts.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The rows `rows` of this batch, in that order.
    pub fn select(&self, rows: &[usize]) -> TokenBatch {
        let per_row = |v: &Option<Vec<f32>>| {
            v.as_ref().map(|v| {
                let w = v.len() / self.len().max(1);
                rows.iter()
                    .flat_map(|&r| v[r * w..(r + 1) * w].iter().copied())
                    .collect()
            })
        };
        TokenBatch {
            ids: rows.iter().map(|&r| self.ids[r].clone()).collect(),
            style: per_row(&self.style),
            ngrams: self
                .ngrams
                .as_ref()
                .map(|g| rows.iter().map(|&r| g[r].clone()).collect()),
            pooled: per_row(&self.pooled),
        }
    }

    /// Appends the rows of `other` (which must carry the same kinds of inputs).
    pub fn append(&mut self, other: TokenBatch) {
        self.ids.extend(other.ids);
        for (mine, theirs) in [
            (&mut self.style, other.style),
            (&mut self.pooled, other.pooled),
        ] {
            if let (Some(a), Some(b)) = (mine.as_mut(), theirs) {
                a.extend(b);
            }
        }
        if let (Some(a), Some(b)) = (self.ngrams.as_mut(), other.ngrams) {
            a.extend(b);
        }
    }

    /// Whether there are no texts.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The bi-encoder module. See the module documentation.
#[derive(Module, Debug)]
pub struct BiEncoder {
    /// The encoder body.
    pub bert: BertModel,
    /// `[hidden (+ STYLE_DIM)] → projection_dim`, initialized to the identity on the pooled
    /// part (so training starts from the base encoder's geometry) and zero on style features.
    pub head: Option<Linear>,
    /// `[2 · dim] → 1` on `[|u − v|, u ∘ v]`, initialized to zero.
    pub pair_head: Option<Linear>,
    /// `dim → topics`, behind gradient reversal.
    pub topic_head: Option<Linear>,
    /// `[scale, bias]` of the pair score `scale · cos + bias`.
    pub score_affine: Param<Tensor<1>>,
    /// The style channel, when configured.
    pub style_channel: Option<StyleChannel>,
    #[module(skip)]
    pooling: Pooling,
    #[module(skip)]
    config: HeadConfig,
    #[module(skip)]
    frozen: usize,
}

impl BiEncoder {
    /// A bi-encoder on `bert` with a freshly initialized head.
    ///
    /// # Errors
    /// [`MatcherError::InvalidParameter`] from [`HeadConfig::validate`].
    pub fn new(
        bert: BertModel,
        pooling: Pooling,
        config: &HeadConfig,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let hidden = bert.hidden_size();
        let input = hidden + if config.style_features { STYLE_DIM } else { 0 };
        let head = config.projection_dim.map(|out| {
            // Identity on the first min(hidden, out) pooled dimensions: a square head starts
            // as a no-op, a smaller one as a truncation.
            let mut w = vec![0.0f32; input * out];
            for i in 0..hidden.min(out) {
                w[i * out + i] = 1.0;
            }
            let mut lin = LinearConfig::new(input, out).init(device);
            lin.weight =
                Param::from_tensor(Tensor::from_data(TensorData::new(w, [input, out]), device));
            lin.bias = Some(Param::from_tensor(Tensor::zeros([out], device)));
            lin
        });
        let dim = config.projection_dim.unwrap_or(hidden)
            + config.style_channel.as_ref().map_or(0, |c| c.dim);
        let zero_linear = |i: usize, o: usize| {
            let mut lin = LinearConfig::new(i, o).init(device);
            lin.weight = Param::from_tensor(Tensor::zeros([i, o], device));
            lin.bias = Some(Param::from_tensor(Tensor::zeros([o], device)));
            lin
        };
        let pair_head = config.pair_features.then(|| zero_linear(2 * dim, 1));
        let topic_head = config
            .topics
            .map(|k| LinearConfig::new(dim, k).init(device));
        let scale = config.init_scale as f32;
        let bias = -(config.init_scale * config.init_shift) as f32;
        let style_channel = config
            .style_channel
            .as_ref()
            .map(|c| StyleChannel::new(c, device))
            .transpose()?;
        Ok(BiEncoder {
            style_channel,
            bert,
            head,
            pair_head,
            topic_head,
            score_affine: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![scale, bias], [2]),
                device,
            )),
            pooling,
            config: config.clone(),
            frozen: 0,
        })
    }

    /// Runs the bottom `frozen` stages of the body without gradients (see
    /// [`BertModel::forward_frozen`]).
    pub fn with_frozen(mut self, frozen: usize) -> Self {
        self.frozen = frozen;
        self
    }

    /// The head configuration.
    pub fn config(&self) -> &HeadConfig {
        &self.config
    }

    /// The pooling of the body.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.content_dim() + self.config.style_channel.as_ref().map_or(0, |c| c.dim)
    }

    /// Width of the sentence-embedding part of the embedding (the head's output, or the
    /// pooled vector without a head).
    pub fn content_dim(&self) -> usize {
        self.config
            .projection_dim
            .unwrap_or_else(|| self.bert.hidden_size())
    }

    /// The n-gram features of `texts` for the style channel (`None` without one).
    pub fn ngram_features(&self, texts: &[&str]) -> Option<Vec<SparseFeatures>> {
        self.style_channel
            .as_ref()
            .map(|c| texts.iter().map(|t| c.hasher.features(t)).collect())
    }

    /// Pooled body vectors of `batch`, before the head.
    ///
    /// # Shapes
    /// → `[n, hidden]`.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] for an empty batch or an empty token sequence; errors of
    /// the body (too many tokens, ids outside the vocabulary).
    pub fn pooled(&self, batch: &TokenBatch) -> Result<Tensor<2>> {
        if batch.is_empty() {
            return Err(MatcherError::InvalidInput {
                reason: "an empty batch".into(),
            });
        }
        if let Some(pooled) = &batch.pooled {
            let hidden = self.bert.hidden_size();
            if pooled.len() != batch.len() * hidden {
                return Err(MatcherError::InvalidInput {
                    reason: format!(
                        "{} pooled values for {} rows of {hidden}",
                        pooled.len(),
                        batch.len()
                    ),
                });
            }
            let device = self.score_affine.val().device();
            return Ok(Tensor::from_data(
                TensorData::new(pooled.clone(), [batch.len(), hidden]),
                &device,
            ));
        }
        let (hidden, lengths) = self.bert.forward_ids(&batch.ids, self.frozen)?;
        Ok(pool(hidden, &lengths, self.pooling))
    }

    /// Whether every stage of the body is frozen: its output is then a fixed function of the
    /// text and can be computed once ([`TokenBatch::pooled`]).
    pub fn body_frozen(&self) -> bool {
        self.frozen > self.bert.layers.len()
    }

    /// The head applied to pooled vectors, L2-normalized, fused with the style channel when
    /// there is one (see the module documentation).
    ///
    /// # Shapes
    /// `pooled`: `[n, hidden]`, `style`: `n · STYLE_DIM` values when the head uses style
    /// features, `ngrams`: `n` rows when the model has a style channel → `[n, dim]`.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] when style features or n-grams are needed but missing or
    /// of the wrong size.
    pub fn project(
        &self,
        pooled: Tensor<2>,
        style: Option<&[f32]>,
        ngrams: Option<&[SparseFeatures]>,
    ) -> Result<Tensor<2>> {
        let [n, _] = pooled.dims();
        let x = if self.config.style_features {
            let style = style.ok_or_else(|| MatcherError::InvalidInput {
                reason: "the head uses style features but none were given".into(),
            })?;
            if style.len() != n * STYLE_DIM {
                return Err(MatcherError::InvalidInput {
                    reason: format!("{} style values for {n} rows of {STYLE_DIM}", style.len()),
                });
            }
            let s = Tensor::<2>::from_data(
                TensorData::new(style.to_vec(), [n, STYLE_DIM]),
                &pooled.device(),
            );
            Tensor::cat(vec![pooled, s], 1)
        } else {
            pooled
        };
        let y = match &self.head {
            Some(h) => h.forward(x),
            None => x,
        };
        let a = l2_normalize(y);
        let Some(channel) = &self.style_channel else {
            return Ok(a);
        };
        let ngrams = ngrams.ok_or_else(|| MatcherError::InvalidInput {
            reason: "the model has a style channel but no n-gram features were given".into(),
        })?;
        if ngrams.len() != n {
            return Err(MatcherError::InvalidInput {
                reason: format!("{} n-gram rows for {n} texts", ngrams.len()),
            });
        }
        let s = channel.forward(ngrams)?;
        let w = (channel.mix.val() * channel.scale).exp();
        let wa = w.clone().slice(0..1).reshape([1, 1]);
        let ws = w.slice(1..2).reshape([1, 1]);
        let [_, da] = a.dims();
        let [_, ds] = s.dims();
        Ok(l2_normalize(Tensor::cat(
            vec![a * wa.expand([n, da]), s * ws.expand([n, ds])],
            1,
        )))
    }

    /// Embeddings of `batch`: [`BiEncoder::pooled`] then [`BiEncoder::project`].
    ///
    /// # Shapes
    /// → `[n, dim]`, unit rows.
    ///
    /// # Errors
    /// As those two.
    pub fn embed(&self, batch: &TokenBatch) -> Result<Tensor<2>> {
        let pooled = self.pooled(batch)?;
        self.project(pooled, batch.style.as_deref(), batch.ngrams.as_deref())
    }

    /// The raw pair score (a logit before calibration): `scale · cos(u, v) + bias`, plus the
    /// pair head on `[|u − v|, u ∘ v]` when configured. Symmetric in `u` and `v`.
    ///
    /// # Shapes
    /// `u`, `v`: `[n, dim]` unit rows → `[n, 1]`.
    pub fn pair_logits(&self, u: Tensor<2>, v: Tensor<2>) -> Tensor<2> {
        let [n, _] = u.dims();
        let cos = (u.clone() * v.clone()).sum_dim(1);
        let affine = self.score_affine.val();
        let scale = affine.clone().slice(0..1).reshape([1, 1]);
        let bias = affine.slice(1..2).reshape([1, 1]);
        let base = cos * scale.expand([n, 1]) + bias.expand([n, 1]);
        match &self.pair_head {
            Some(h) => {
                let features = Tensor::cat(vec![(u.clone() - v.clone()).abs(), u * v], 1);
                base + h.forward(features)
            }
            None => base,
        }
    }

    /// Topic logits of embeddings through gradient reversal with weight `lambda` (identity
    /// forward). `None` without an adversary.
    ///
    /// # Shapes
    /// `embeddings`: `[n, dim]` → `[n, topics]`.
    pub fn topic_logits(&self, embeddings: Tensor<2>, lambda: f64) -> Option<Tensor<2>> {
        self.topic_head
            .as_ref()
            .map(|h| h.forward(grad_reverse(embeddings, lambda)))
    }
}

/// The learned style channel: an embedding bag over hashed n-grams (fastText-style), a
/// linear layer, and the channel's weight in the fused embedding.
///
/// ```text
/// s = L2(style_head(scale · Σ_k weight_k · table[id_k]))
/// ```
///
/// `table` starts as `N(0, 1 / (dim · scale²))`, so the bag starts as a random projection of the
/// passage's unit TF-IDF vector (its cosines approximate the TF-IDF cosines), `style_head`
/// as the identity, and `mix` as `[0, 0]` (equal weights). `mix` is scaled by `scale` too:
/// the channels' weights move at the table's rate.
#[derive(Module, Debug)]
pub struct StyleChannel {
    /// `[buckets, dim]` rows of the hashed n-grams (values scaled by `scale` in use).
    pub table: Param<Tensor<2>>,
    /// `[dim] → [dim]`, initialized to the identity.
    pub style_head: Linear,
    /// `[ln w_content, ln w_style] / scale`: the channels' weights in the fused embedding
    /// (scaled like the table, so they learn at the table's rate).
    pub mix: Param<Tensor<1>>,
    #[module(skip)]
    hasher: NgramHasher,
    #[module(skip)]
    scale: f64,
}

impl StyleChannel {
    /// A fresh channel (random table from the device's seeded RNG, IDF weights 1).
    ///
    /// # Errors
    /// [`MatcherError::InvalidParameter`] from [`StyleChannelConfig::validate`].
    pub fn new(config: &StyleChannelConfig, device: &Device) -> Result<Self> {
        let hasher = NgramHasher::new(config)?;
        let scale = config.table_lr_scale;
        let table = Tensor::<2>::random(
            [config.buckets, config.dim],
            burn::tensor::Distribution::Normal(0.0, 1.0 / ((config.dim as f64).sqrt() * scale)),
            device,
        );
        let mut head = LinearConfig::new(config.dim, config.dim).init(device);
        let mut eye = vec![0.0f32; config.dim * config.dim];
        for i in 0..config.dim {
            eye[i * config.dim + i] = 1.0;
        }
        head.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(eye, [config.dim, config.dim]),
            device,
        ));
        head.bias = Some(Param::from_tensor(Tensor::zeros([config.dim], device)));
        Ok(StyleChannel {
            table: Param::from_tensor(table),
            style_head: head,
            mix: Param::from_tensor(Tensor::zeros([2], device)),
            hasher,
            scale,
        })
    }

    /// The hasher (its configuration and fitted IDF).
    pub fn hasher(&self) -> &NgramHasher {
        &self.hasher
    }

    /// Replaces the hasher's IDF weights (fitted on training texts, or as saved).
    ///
    /// # Errors
    /// As [`NgramHasher::with_idf`].
    pub fn set_idf(&mut self, idf: Vec<f32>) -> Result<()> {
        self.hasher = self.hasher.clone().with_idf(idf)?;
        Ok(())
    }

    /// Unit channel vectors of passages' n-gram features.
    ///
    /// # Shapes
    /// `features`: `n` rows → `[n, dim]`.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] for no rows or a slot outside the table.
    pub fn forward(&self, features: &[SparseFeatures]) -> Result<Tensor<2>> {
        let n = features.len();
        let table = self.table.val();
        let [buckets, dim] = table.dims();
        if n == 0 {
            return Err(MatcherError::InvalidInput {
                reason: "an empty batch".into(),
            });
        }
        let width = features
            .iter()
            .map(|f| f.ids.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut ids = vec![0i64; n * width];
        let mut weights = vec![0.0f32; n * width];
        for (r, f) in features.iter().enumerate() {
            if let Some(&bad) = f.ids.iter().find(|&&i| i as usize >= buckets) {
                return Err(MatcherError::InvalidInput {
                    reason: format!("n-gram slot {bad} outside the table's {buckets} rows"),
                });
            }
            for (k, (&i, &w)) in f.ids.iter().zip(&f.weights).enumerate() {
                ids[r * width + k] = i64::from(i);
                weights[r * width + k] = w;
            }
        }
        let device = table.device();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [n * width]), &device);
        let weights = Tensor::<3>::from_data(TensorData::new(weights, [n, width, 1]), &device);
        let rows = table.select(0, ids).reshape([n, width, dim]);
        let bag = (rows * weights.expand([n, width, dim]))
            .sum_dim(1)
            .reshape([n, dim])
            * self.scale;
        Ok(l2_normalize(self.style_head.forward(bag)))
    }
}

/// Rows scaled to unit L2 norm (norms below 1e-12 treated as 1e-12).
///
/// # Shapes
/// `[n, d]` → `[n, d]`.
pub(crate) fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = (x.clone() * x.clone()).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use lexforge_nn::bert::BertConfig;

    fn tiny(config: &HeadConfig, device: &Device) -> BiEncoder {
        let bert = BertModel::new(&BertConfig::bert(50, 16, 2, 2), device).unwrap();
        BiEncoder::new(bert, Pooling::Mean, config, device).unwrap()
    }

    fn rows(t: Tensor<2>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec_as::<f32>()
            .unwrap()
    }

    #[test]
    fn head_starts_as_identity_and_scores_are_symmetric() {
        let d = Device::flex();
        let config = HeadConfig {
            projection_dim: Some(16),
            style_features: true,
            pair_features: true,
            topics: Some(3),
            ..HeadConfig::default()
        };
        let m = tiny(&config, &d);
        let texts = ["A short one.", "Another, longer; text!"];
        let batch = TokenBatch::new(vec![vec![1, 5, 7, 2], vec![1, 9, 2]], Some(&texts));
        let pooled = m.pooled(&batch).unwrap();
        let e = rows(m.embed(&batch).unwrap());
        let p = rows(l2_normalize(pooled));
        for (a, b) in e.iter().zip(&p) {
            assert!((a - b).abs() < 1e-5);
        }
        let u = m.embed(&batch).unwrap();
        let v = u.clone().flip([0]);
        let uv = rows(m.pair_logits(u.clone(), v.clone()));
        let vu = rows(m.pair_logits(v, u.clone()));
        assert!((uv[0] - vu[0]).abs() < 1e-5 && (uv[1] - vu[1]).abs() < 1e-5);
        // Self-pairs: cos = 1 → scale − scale · shift = 20 − 10.
        let same = rows(m.pair_logits(u.clone(), u.clone()));
        assert!((same[0] - 10.0).abs() < 1e-4);
        assert_eq!(m.topic_logits(u, 1.0).unwrap().dims(), [2, 3]);
    }

    #[test]
    fn frozen_stages_get_no_gradient_and_checkpointing_changes_nothing() {
        let batch = TokenBatch::new(vec![vec![1, 5, 7, 2], vec![1, 9, 2]], None);
        let grads_of = |device: Device, frozen: usize| {
            lexforge_core::Seed(1).apply_to(&device);
            let m = tiny(&HeadConfig::default(), &device).with_frozen(frozen);
            let e = m.embed(&batch).unwrap();
            let loss = (e.clone() * e.flip([0])).sum();
            let grads = loss.backward();
            let word = m.bert.embeddings.word.weight.grad(&grads);
            let top = m.bert.layers[1].output.weight.grad(&grads);
            (word.map(rows), top.map(rows))
        };
        let (word, top) = grads_of(Device::flex().autodiff(), 0);
        assert!(word.is_some() && top.is_some());
        // Embeddings and layer 0 frozen: no gradient there, the top layer still learns.
        let (word_f, top_f) = grads_of(Device::flex().autodiff(), 2);
        assert!(word_f.is_none() && top_f.is_some());
        // Gradient checkpointing recomputes activations; the gradients are the same.
        let (word_c, top_c) = grads_of(Device::flex().autodiff().gradient_checkpointing(), 0);
        for (a, b) in [(word, word_c), (top, top_c)] {
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
        }
    }

    #[test]
    fn bad_configs_and_inputs_are_typed() {
        let d = Device::flex();
        let bert = BertModel::new(&BertConfig::bert(50, 16, 1, 2), &d).unwrap();
        let style_without_head = HeadConfig {
            projection_dim: None,
            style_features: true,
            ..HeadConfig::default()
        };
        assert!(matches!(
            BiEncoder::new(bert, Pooling::Mean, &style_without_head, &d),
            Err(MatcherError::InvalidParameter {
                parameter: "style_features",
                ..
            })
        ));
        let m = tiny(&HeadConfig::default(), &d);
        assert!(m.embed(&TokenBatch::new(vec![], None)).is_err());
        assert!(m.embed(&TokenBatch::new(vec![vec![]], None)).is_err());
        let style = tiny(
            &HeadConfig {
                style_features: true,
                ..HeadConfig::default()
            },
            &d,
        );
        assert!(matches!(
            style.embed(&TokenBatch::new(vec![vec![1, 2]], None)),
            Err(MatcherError::InvalidInput { .. })
        ));
    }
}
