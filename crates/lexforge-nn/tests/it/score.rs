//! Scoring on a real (randomly initialized) GPT-2.

use burn::tensor::Device;
use lexforge_nn::generate::{CausalLm, GenerateConfig, generate};
use lexforge_nn::gpt2::Gpt2;
use lexforge_nn::score::score;

use crate::tiny;

#[test]
fn loss_perplexity_surprisal_and_top_k_agree_with_the_log_probs() {
    let m = Gpt2::new(&tiny(), &Device::flex()).unwrap();
    let ids = [3u32, 14, 15, 9, 26, 5, 35];
    let s = score(&m, &ids, 5).unwrap();
    assert_eq!(s.predicted, 6);
    let lp = m.log_probs(&ids).unwrap();
    let manual: f64 = (1..ids.len())
        .map(|p| -f64::from(lp[p - 1][ids[p] as usize]))
        .sum::<f64>()
        / 6.0;
    assert!((s.loss - manual).abs() < 1e-9);
    assert!((s.perplexity - manual.exp()).abs() < 1e-9);
    for t in &s.tokens {
        assert_eq!(t.top_k.len(), 5);
        assert!(t.top_k.windows(2).all(|w| w[0].1 >= w[1].1));
        let row = &lp[t.position - 1];
        let argmax = (0..row.len())
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap();
        assert_eq!(t.top_k[0].0 as usize, argmax);
        assert!(t.surprisal_bits > 0.0);
    }
    // A uniform model would give log2(50) bits; a random init is close to it.
    let mean_bits = s.tokens.iter().map(|t| t.surprisal_bits).sum::<f64>() / 6.0;
    assert!((mean_bits - 50f64.log2()).abs() < 1.0, "{mean_bits}");
}

#[test]
fn greedy_continuations_are_the_top_prediction_and_long_texts_use_windows() {
    let m = Gpt2::new(&tiny(), &Device::flex()).unwrap();
    let greedy = GenerateConfig {
        temperature: 0.0,
        max_new_tokens: 5,
        ..GenerateConfig::default()
    };
    let g = generate(&m, &[7, 8], &greedy, &|ids| format!("{ids:?}"))
        .unwrap()
        .remove(0);
    let seq: Vec<u32> = [7, 8]
        .iter()
        .copied()
        .chain(g.token_ids.iter().copied())
        .collect();
    let s = score(&m, &seq, 1).unwrap();
    for t in &s.tokens[1..] {
        assert_eq!(t.top_k[0].0, t.id, "greedy picks the top prediction");
    }
    // 40 tokens with a context of 16: every token after the first is scored exactly once.
    let long: Vec<u32> = (0..40).map(|i| (i * 7 % 50) as u32).collect();
    let s = score(&m, &long, 0).unwrap();
    assert_eq!(s.predicted, 39);
    let positions: Vec<usize> = s.tokens.iter().map(|t| t.position).collect();
    assert_eq!(positions, (1..40).collect::<Vec<_>>());
    assert!(score(&m, &[1], 0).is_err());
    assert!(score(&m, &[1, 99], 0).is_err(), "id outside the vocabulary");
}
