//! Generation on a real (randomly initialized) GPT-2.

use burn::tensor::{Device, Int, Tensor, TensorData};
use lexforge_nn::generate::{FinishReason, GenerateConfig, generate};
use lexforge_nn::gpt2::Gpt2;

use crate::tiny;

/// Ids as two-digit numbers: tokens are 2 characters, so a stop string can span two tokens.
fn decode(ids: &[u32]) -> String {
    ids.iter().map(|i| format!("{i:02}")).collect()
}

fn model() -> Gpt2 {
    Gpt2::new(&tiny(), &Device::flex()).unwrap()
}

#[test]
fn same_seed_same_outputs_and_sequences_do_not_depend_on_batch_size() {
    let m = model();
    let config = GenerateConfig {
        max_new_tokens: 8,
        // A random model is very peaked; a high temperature makes sampling visible.
        temperature: 100.0,
        top_k: Some(20),
        top_p: Some(0.95),
        num_return_sequences: 3,
        seed: 7,
        ..GenerateConfig::default()
    };
    let a = generate(&m, &[1, 2, 3], &config, &decode).unwrap();
    let b = generate(&m, &[1, 2, 3], &config, &decode).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 3);
    assert!(
        a.iter()
            .all(|g| g.tokens_generated == 8 && g.finish == FinishReason::MaxTokens)
    );
    let one = generate(
        &m,
        &[1, 2, 3],
        &GenerateConfig {
            num_return_sequences: 1,
            ..config.clone()
        },
        &decode,
    )
    .unwrap();
    assert_eq!(one[0], a[0], "row 0 is the same alone or in a batch of 3");
    let other = generate(
        &m,
        &[1, 2, 3],
        &GenerateConfig { seed: 8, ..config },
        &decode,
    )
    .unwrap();
    assert_ne!(other, a);
    let distinct: std::collections::HashSet<_> = a.iter().map(|g| g.token_ids.clone()).collect();
    assert!(distinct.len() > 1, "rows sample independently: {a:?}");
}

#[test]
fn greedy_equals_argmax_decoding_step_by_step_without_cache() {
    let m = model();
    let device = Device::flex();
    let config = GenerateConfig {
        max_new_tokens: 10,
        temperature: 0.0,
        ..GenerateConfig::default()
    };
    let got = generate(&m, &[5, 6], &config, &decode).unwrap();
    let mut seq: Vec<i64> = vec![5, 6];
    let mut expected = Vec::new();
    for _ in 0..10 {
        let x: Tensor<2, Int> =
            Tensor::from_data(TensorData::new(seq.clone(), [1, seq.len()]), &device);
        let logits = m.forward(x).unwrap();
        let [_, t, v] = logits.dims();
        let last = logits.narrow(1, t - 1, 1).reshape([v]);
        let next = last
            .argmax(0)
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap()[0];
        expected.push(next as u32);
        seq.push(next);
    }
    assert_eq!(got[0].token_ids, expected);
    assert_eq!(got[0].text, decode(&expected));
}

#[test]
fn a_stop_sequence_split_across_two_tokens_stops_the_text() {
    let m = model();
    let greedy = GenerateConfig {
        max_new_tokens: 12,
        temperature: 0.0,
        ..GenerateConfig::default()
    };
    let free = generate(&m, &[9], &greedy, &decode).unwrap().remove(0);
    // The last digit of token 3 and the first digit of token 4.
    let stop = free.text[7..9].to_owned();
    let cut = free.text.find(&stop).unwrap();
    let stopped = generate(
        &m,
        &[9],
        &GenerateConfig {
            stop_sequences: vec![stop.clone()],
            ..greedy
        },
        &decode,
    )
    .unwrap()
    .remove(0);
    assert_eq!(
        stopped.finish,
        FinishReason::StopSequence,
        "{stop:?} in {}",
        free.text
    );
    assert_eq!(stopped.text, free.text[..cut]);
    assert!(stopped.tokens_generated <= 5);
}

#[test]
fn eos_and_bad_requests() {
    let m = model();
    // Near-uniform seeded sampling: varied tokens, and the same seed replays the same draws.
    let greedy = GenerateConfig {
        temperature: 100.0,
        max_new_tokens: 6,
        seed: 3,
        ..GenerateConfig::default()
    };
    let free = generate(&m, &[4], &greedy, &decode).unwrap().remove(0);
    // The first token that did not occur before it: making it EOS must stop right there.
    let k = (1..free.token_ids.len())
        .find(|&k| !free.token_ids[..k].contains(&free.token_ids[k]))
        .expect("six near-uniform draws over 50 tokens are not all equal");
    let eos = free.token_ids[k];
    let g = generate(
        &m,
        &[4],
        &GenerateConfig {
            eos_token_id: Some(eos),
            ..greedy
        },
        &decode,
    )
    .unwrap()
    .remove(0);
    assert_eq!(g.finish, FinishReason::Eos);
    assert_eq!(g.token_ids, free.token_ids[..=k]);
    assert_eq!(g.text, decode(&free.token_ids[..k]));
    let long: Vec<u32> = (0..16).collect();
    assert!(
        generate(&m, &long, &GenerateConfig::default(), &decode).is_err(),
        "prompt fills the context"
    );
    for bad in [
        GenerateConfig {
            max_new_tokens: 0,
            ..GenerateConfig::default()
        },
        GenerateConfig {
            max_new_tokens: 513,
            ..GenerateConfig::default()
        },
        GenerateConfig {
            num_return_sequences: 11,
            ..GenerateConfig::default()
        },
        GenerateConfig {
            top_p: Some(1.5),
            ..GenerateConfig::default()
        },
        GenerateConfig {
            temperature: -1.0,
            ..GenerateConfig::default()
        },
    ] {
        assert!(generate(&m, &[1], &bad, &decode).is_err(), "{bad:?}");
    }
    let ctx = generate(
        &m,
        &(0..14).collect::<Vec<u32>>(),
        &GenerateConfig {
            temperature: 0.0,
            max_new_tokens: 10,
            ..GenerateConfig::default()
        },
        &decode,
    )
    .unwrap()
    .remove(0);
    assert_eq!(ctx.finish, FinishReason::ContextFull);
    assert_eq!(ctx.tokens_generated, 2);
}

#[test]
fn greedy_steps_picked_on_the_device_equal_the_argmax_of_the_logits() {
    use lexforge_nn::generate::CausalLm;
    let m = model();
    let (state, _) = m.prefill(&[1, 2, 3], 2).unwrap();
    let (mut a, mut b) = (state.clone(), state);
    for tokens in [[4u32, 9], [7, 7], [0, 31]] {
        let picked = m.step_argmax(&mut a, &tokens).unwrap();
        let logits = m.step(&mut b, &tokens).unwrap();
        let host: Vec<u32> = logits
            .iter()
            .map(|row| {
                let best = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                row.iter().position(|&v| v == best).unwrap() as u32
            })
            .collect();
        assert_eq!(picked, host);
    }
}
