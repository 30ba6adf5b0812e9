//! ID-conditioned word generation on a small fixed setup: six themed corpora, a tiny BPE
//! GPT-2 pretrained on their words without IDs (it learns to spell, not which ID owns which
//! words), then LoRA adapters that learn the ID → words mapping.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::Device;
use lexforge_core::{CancelToken, InMemoryCorpus, NoopSink, Seed};
use lexforge_nn::encoder::{BertSentenceEncoder, EncoderOptions, SentenceEncoder, find_minilm};
use lexforge_nn::gpt2::{Gpt2, Gpt2Config, load_hf_dir, save_hf_dir};
use lexforge_semantic::{
    CorpusLabels, CorpusSet, LoraWordGenerator, Sequences, WordCorpus, WordGeneratorConfig, WordLm,
    train_word_generator,
};
use lexforge_tokenizers::{Tokenizer, TokenizerConfig, TokenizerMethod, TokenizerTrainRequest};
use lexforge_train::{CheckpointDir, Resume, TrainConfig, TrainContext, train};
use rand::seq::SliceRandom;

const THEMES: [(&str, &str); 6] = [
    (
        "sea",
        "anchor harbour sailor mast tide wave vessel deck rudder keel oar captain voyage shore storm ocean current coral reef buoy",
    ),
    (
        "farm",
        "barn cattle meadow plough harvest tractor wheat barley pasture orchard hay sheep farmer stable furrow crop silo orchard goat dairy",
    ),
    (
        "church",
        "altar prayer bishop chapel hymn pulpit sermon priest psalm cathedral vicar choir steeple parish blessing pilgrim relic abbey monk candle",
    ),
    (
        "war",
        "soldier cannon battle regiment trench rifle sword siege cavalry general bayonet fortress armour musket volley infantry banner wound victory retreat",
    ),
    (
        "kitchen",
        "kettle bread butter oven spoon flour pastry ladle sugar dough skillet pepper onion garlic broth biscuit cheese apron platter stew",
    ),
    (
        "forest",
        "pine oak moss fern thicket acorn woodland timber badger owl squirrel bramble grove hollow twig lichen beech maple canopy woodpecker",
    ),
];

fn corpora() -> CorpusSet {
    let corpora = THEMES
        .iter()
        .map(|(theme, words)| WordCorpus {
            id: (*theme).to_owned(),
            labels: CorpusLabels {
                style: (*theme).to_owned(),
                complexity: "basic".into(),
                era: "any".into(),
                variation: 0,
            },
            words: words.split(' ').map(str::to_owned).collect(),
            source: BTreeMap::new(),
        })
        .collect();
    CorpusSet::new("fixture", corpora)
}

#[test]
fn generated_words_are_closer_to_their_ids_corpus() {
    let _device = crate::DEVICE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let set = corpora();
    let ids: BTreeMap<String, Vec<u32>> = set
        .corpora
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.clone(), vec![i as u32 * 5, (i as u32 * 7) % 32, 3, 0]))
        .collect();
    // Base: a char tokenizer and a tiny GPT-2 pretrained on the words of every corpus, mixed.
    let mut lines = Vec::new();
    let mut rng = Seed(1).rng("base-lines");
    for round in 0..40 {
        let mut all: Vec<&str> = set
            .corpora
            .iter()
            .flat_map(|c| c.words.iter().map(String::as_str))
            .collect();
        all.shuffle(&mut rng);
        for chunk in all.chunks(10) {
            lines.push(format!(
                "[{} {} 9 1] {}\n",
                round % 30,
                (round * 3) % 32,
                chunk.join(" ")
            ));
        }
    }
    let line_refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut request = TokenizerTrainRequest::new(InMemoryCorpus::from_texts(lines.clone()));
    request.holdout = 0.0;
    let tokenizer = Tokenizer::train(
        &TokenizerConfig::new(TokenizerMethod::Bpe, 600),
        &request,
        &NoopSink,
    )
    .unwrap();
    let base = dir.path().join("base");
    tokenizer.save(base.join("tokenizer")).unwrap();
    let ad = Device::flex().autodiff();
    Seed(2).apply_to(&ad);
    let gpt_config = Gpt2Config::new(tokenizer.vocab_size(), 128, 64, 2, 4);
    let net = Gpt2::new(&gpt_config, &ad).unwrap();
    let data = Sequences::from_lines(&tokenizer, &line_refs, 128).unwrap();
    let valid = Sequences::from_lines(&tokenizer, &line_refs[..8], 128).unwrap();
    let ckpt = CheckpointDir::new(dir.path().join("base-ckpt"), 1).unwrap();
    let config = TrainConfig {
        max_steps: 250,
        batch_size: 16,
        lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: 20,
        eval_every: 0,
        checkpoint_every: 0,
        ..TrainConfig::default()
    };
    let ctx = TrainContext {
        run_id: "base",
        kind: "test",
        device: &ad,
        replicas: &[],
        train: &data,
        valid: &valid,
        checkpoints: &ckpt,
        events: &NoopSink,
        cancel: &CancelToken::new(),
    };
    let t = std::time::Instant::now();
    let out = train(&config, &ctx, WordLm { net }, Resume::Fresh).unwrap();
    save_hf_dir(&out.model.valid().net, &gpt_config, &base).unwrap();
    eprintln!("base pretraining {:.1}s", t.elapsed().as_secs_f64());
    load_hf_dir(&base, &Device::flex()).unwrap();

    // LoRA adapters: ID → words.
    let gen_dir = dir.path().join("generator");
    let mut gconfig = WordGeneratorConfig::default();
    gconfig.train.max_steps = 250;
    let t = std::time::Instant::now();
    let report = train_word_generator(
        &gconfig,
        &base,
        &set,
        &ids,
        &gen_dir,
        &Device::flex(),
        &NoopSink,
        &CancelToken::new(),
    )
    .unwrap();
    eprintln!("adapters {:.1}s {report:?}", t.elapsed().as_secs_f64());
    assert!(gen_dir.join("adapters.safetensors").is_file());
    assert!(!gen_dir.join("model.safetensors").exists(), "adapters only");
    let generator = LoraWordGenerator::load(&gen_dir, None, &Device::flex()).unwrap();

    // Closer to the own corpus's centroid than to a random other corpus's.
    let minilm = find_minilm()
        .expect("all-MiniLM-L6-v2: set LEXFORGE_MINILM_DIR (scripts/test.sh does, from .venv)");
    let encoder =
        BertSentenceEncoder::load(minilm, &Device::flex(), &EncoderOptions::default()).unwrap();
    let centroid = |words: &[&str]| {
        let e = encoder.encode(words, 64).unwrap();
        lexforge_semantic::mean_vector(e.as_slice(), e.dim())
    };
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let centroids: Vec<Vec<f32>> = set
        .corpora
        .iter()
        .map(|c| centroid(&c.words.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect();
    let mut closer = 0;
    let mut rng = Seed(9).rng("other");
    for (i, c) in set.corpora.iter().enumerate() {
        let words = generator.generate_words(&ids[&c.id], 10, 7).unwrap();
        assert!(!words.is_empty(), "{}", c.id);
        let again = generator.generate_words(&ids[&c.id], 10, 7).unwrap();
        assert_eq!(words, again, "same seed, same words");
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let g = centroid(&refs);
        let mut others: Vec<usize> = (0..set.corpora.len()).filter(|&j| j != i).collect();
        others.shuffle(&mut rng);
        let own = dot(&g, &centroids[i]);
        let other = dot(&g, &centroids[others[0]]);
        eprintln!("{}: {words:?} own {own:.3} other {other:.3}", c.id);
        if own > other {
            closer += 1;
        }
    }
    let share = closer as f64 / set.corpora.len() as f64;
    eprintln!("closer for {closer} of {} IDs", set.corpora.len());
    assert!(share >= 0.7, "{share}");
}
