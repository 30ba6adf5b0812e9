//! Hand-made style features of a passage: what stylometry measures besides content.
//!
//! [`style_features`] returns [`STYLE_DIM`] values, each scaled to be of order 1 on English
//! prose so they can be concatenated with a sentence embedding before the projection head:
//!
//! | index | feature | scale |
//! |---|---|---|
//! | 0, 1 | words per sentence, mean and standard deviation | ÷ 25 |
//! | 2 | mean word length in characters | ÷ 5 |
//! | 3 | type-token ratio (distinct lower-cased words ÷ words) | 1 |
//! | 4..13 | rate per word of `,` `;` `:` `!` `?` `"`/`“”` `'`/`’` (outside words) `—`/`--` `(` `-` | × 10 |
//! | 13..13+F | rate per word of each of [`FUNCTION_WORDS`] | × 10 |
//!
//! Pure functions of the text: the same passage always gives the same vector.

use lexforge_data::split_sentences;

/// Function words whose frequencies are classic authorship markers (Mosteller & Wallace).
pub(crate) const FUNCTION_WORDS: [&str; 24] = [
    "the", "of", "and", "to", "a", "in", "that", "it", "was", "he", "she", "i", "you", "his",
    "her", "with", "as", "for", "but", "not", "upon", "which", "would", "been",
];

/// Punctuation classes counted per word (see the module table).
const PUNCTUATION: usize = 9;

/// Number of style features.
pub(crate) const STYLE_DIM: usize = 4 + PUNCTUATION + FUNCTION_WORDS.len();

/// The [`STYLE_DIM`] style features of `text` (all zeros for a text without words).
pub(crate) fn style_features(text: &str) -> [f32; STYLE_DIM] {
    let mut out = [0.0f32; STYLE_DIM];
    let words: Vec<String> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .map(|w| w.trim_matches(|c| c == '\'' || c == '’').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return out;
    }
    let n = words.len() as f32;
    let lengths: Vec<f32> = split_sentences(text)
        .iter()
        .map(|s| s.split_whitespace().count() as f32)
        .filter(|&c| c > 0.0)
        .collect();
    if !lengths.is_empty() {
        let m = lengths.iter().sum::<f32>() / lengths.len() as f32;
        let var = lengths.iter().map(|l| (l - m) * (l - m)).sum::<f32>() / lengths.len() as f32;
        out[0] = m / 25.0;
        out[1] = var.sqrt() / 25.0;
    }
    out[2] = words.iter().map(|w| w.chars().count() as f32).sum::<f32>() / n / 5.0;
    let distinct: std::collections::HashSet<&str> = words.iter().map(String::as_str).collect();
    out[3] = distinct.len() as f32 / n;

    let mut punct = [0u32; PUNCTUATION];
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let prev_alpha = i > 0 && chars[i - 1].is_alphanumeric();
        let next_alpha = chars.get(i + 1).is_some_and(|c| c.is_alphanumeric());
        let class = match c {
            ',' => Some(0),
            ';' => Some(1),
            ':' => Some(2),
            '!' => Some(3),
            '?' => Some(4),
            '"' | '“' | '”' => Some(5),
            '\'' | '’' | '‘' if !(prev_alpha && next_alpha) => Some(6),
            '—' => Some(7),
            '-' if chars.get(i + 1) == Some(&'-') => Some(7),
            '-' if i > 0 && chars[i - 1] == '-' => None,
            '(' => Some(8),
            _ => None,
        };
        if let Some(k) = class {
            punct[k] += 1;
        }
    }
    for (k, &count) in punct.iter().enumerate() {
        out[4 + k] = count as f32 / n * 10.0;
    }
    for w in &words {
        if let Some(k) = FUNCTION_WORDS.iter().position(|f| f == w) {
            out[4 + PUNCTUATION + k] += 10.0 / n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_measure_what_they_say() {
        let a = style_features("The cat sat. The dog, the bird; and I ran!");
        assert_eq!(a.len(), STYLE_DIM);
        // Sentences of 3 and 7 words.
        assert!((a[0] - 5.0 / 25.0).abs() < 1e-6);
        assert!((a[1] - 2.0 / 25.0).abs() < 1e-6);
        // 10 words, 8 distinct ("the" three times).
        assert!((a[3] - 0.8).abs() < 1e-6);
        assert!((a[4] - 1.0).abs() < 1e-6, "one comma per 10 words");
        assert!((a[5] - 1.0).abs() < 1e-6, "one semicolon");
        assert!((a[7] - 1.0).abs() < 1e-6, "one exclamation mark");
        let the = 4 + PUNCTUATION;
        assert!((a[the] - 3.0).abs() < 1e-6, "three 'the' in ten words");
        // Apostrophes inside words are not quotes.
        let b = style_features("Don't 'go' there");
        assert!((b[4 + 6] - 2.0 / 3.0 * 10.0).abs() < 1e-5);
        assert_eq!(style_features(" ... "), [0.0; STYLE_DIM]);
        assert_eq!(style_features("Same text."), style_features("Same text."));
    }
}
