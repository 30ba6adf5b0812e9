//! A rule-based English sentence splitter that keeps byte offsets.
//!
//! A sentence ends at `.`, `!`, `?` or `…` (with any closing quotes and brackets after it)
//! when whitespace follows and the next word can start a sentence (a capital, a digit, an
//! opening quote or bracket), and always at a paragraph break (a blank line). It does not end
//! after a title abbreviation (`Mr.`, `Dr.`, `St.`, …), an initial (`H. G. Wells`), a Latin
//! abbreviation (`e.g.`, `i.e.`, `viz.`, `cf.`, `vs.`), a numbering abbreviation before a number
//! (`No. 7`, `Chap. IV`), inside a decimal (`3.14`, no space), before a lowercase word (`"Oh!"
//! said she`, `... and so on`), or after a quoted exclamation or question followed by a name
//! and a speech verb (`"Stop!" Tom cried.`). Single line breaks are spaces. Text in the
//! one-token-per-space style of some corpora (`married . ''`) is understood too.
//!
//! Invariants: spans are in order, do not overlap, start and end on non-whitespace characters,
//! and every non-whitespace character of the input lies in exactly one span.

use serde::{Deserialize, Serialize};

/// A half-open byte range `[start, end)` into the text it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The slice of `text` this span covers.
    ///
    /// # Panics
    /// When the span does not lie on character boundaries of `text`.
    pub fn of<'a>(&self, text: &'a str) -> &'a str {
        &text[self.start..self.end]
    }
}

/// Titles that come before a name: a period after them never ends a sentence.
const TITLES: &[&str] = &[
    "mr",
    "mrs",
    "ms",
    "messrs",
    "mme",
    "mlle",
    "dr",
    "st",
    "mt",
    "ft",
    "prof",
    "rev",
    "revd",
    "capt",
    "cap",
    "col",
    "gen",
    "lt",
    "sgt",
    "maj",
    "adm",
    "cmdr",
    "gov",
    "hon",
    "sen",
    "rep",
    "pres",
    "supt",
    "insp",
    "mons",
    "fr",
    "bro",
    "jr",
    "sr",
    "esq",
    "bart",
    "messieurs",
];

/// Abbreviations that never end a sentence whatever follows.
const NEVER_FINAL: &[&str] = &[
    "e.g", "i.e", "viz", "cf", "vs", "ibid", "al", "adj", "adv", "prep", "conj", "pron", "interj",
];

/// Abbreviations that do not end a sentence before a number (`No. 7`, `Chap. IV`).
const NUMBERING: &[&str] = &[
    "no", "nos", "vol", "vols", "ch", "chap", "pp", "p", "fig", "art", "sec", "sect", "pt", "ed",
    "bk", "ver", "op", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "ca",
];

/// Verbs of speech that continue a sentence after a quoted exclamation or question.
const SPEECH_VERBS: &[&str] = &[
    "said",
    "says",
    "cried",
    "asked",
    "replied",
    "answered",
    "exclaimed",
    "shouted",
    "whispered",
    "returned",
    "continued",
    "added",
    "observed",
    "remarked",
    "called",
    "muttered",
    "murmured",
    "repeated",
    "screamed",
    "roared",
    "rejoined",
    "inquired",
    "enquired",
    "demanded",
    "thought",
    "sang",
    "groaned",
    "sighed",
    "laughed",
    "pleaded",
    "urged",
    "interrupted",
    "retorted",
];

const CLOSERS: &[char] = &['"', '\'', '”', '’', ')', ']', '»', '›', '_', '*'];
const OPENERS: &[char] = &['"', '\'', '“', '‘', '(', '[', '«', '‹', '`', '_'];

/// Splits `text` into sentences (see the module docs). Returns slices of `text`.
pub fn split_sentences(text: &str) -> Vec<&str> {
    sentence_spans(text).iter().map(|s| s.of(text)).collect()
}

/// Longest stretch of text the splitter looks at in one piece. Paragraphs longer than this
/// (a file without line breaks) are cut at a space before the limit, which also ends a
/// sentence there; memory stays bounded by the segment, not by the file.
pub(crate) const MAX_SEGMENT_BYTES: usize = 64 * 1024;

/// The sentences of `text` as byte spans (see the module docs for the rules and invariants).
pub fn sentence_spans(text: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + MAX_SEGMENT_BYTES).min(text.len());
        if end < text.len() {
            // Prefer a paragraph break, then any whitespace, then a char boundary.
            let window = &text[start..floor_char_boundary(text, end)];
            end = start
                + window
                    .rfind("\n\n")
                    .map(|p| p + 2)
                    .or_else(|| window.rfind(char::is_whitespace).map(|p| p + 1))
                    .filter(|&p| p > 0)
                    .unwrap_or(window.len());
        }
        for s in split_segment(&text[start..end]) {
            spans.push(Span {
                start: s.start + start,
                end: s.end + start,
            });
        }
        start = end;
    }
    spans
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The splitter proper, on one segment.
fn split_segment(text: &str) -> Vec<Span> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let byte_at = |i: usize| if i < n { chars[i].0 } else { text.len() };
    let mut spans = Vec::new();
    let mut start: Option<usize> = None; // char index of the current sentence's first char
    let mut last_nonspace = 0usize; // char index one past the last non-space char seen
    let mut i = 0usize;
    while i < n {
        let c = chars[i].1;
        if c == '\n' && paragraph_break_at(&chars, i) {
            if let Some(s) = start.take() {
                spans.push(Span {
                    start: byte_at(s),
                    end: byte_at(last_nonspace),
                });
            }
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if start.is_none() {
            start = Some(i);
        }
        last_nonspace = i + 1;
        if !is_terminal(c) {
            i += 1;
            continue;
        }
        // The terminal run: `.`, `?!`, `...`, `. . .`, `…`.
        let mut j = i + 1;
        let mut dots = usize::from(c == '.');
        loop {
            if j < n && is_terminal(chars[j].1) {
                dots += usize::from(chars[j].1 == '.');
                j += 1;
            } else if j + 1 < n && chars[j].1 == ' ' && chars[j + 1].1 == '.' && dots > 0 {
                // ". . ." spaced ellipsis
                dots += 1;
                j += 2;
            } else {
                break;
            }
        }
        let single_period = c == '.' && j == i + 1;
        let ellipsis = dots >= 2 || chars[i..j].iter().any(|&(_, ch)| ch == '…');
        // Closing quotes and brackets glued to the terminal.
        let mut k = j;
        while k < n && CLOSERS.contains(&chars[k].1) {
            k += 1;
        }
        let quoted = k > j;
        // A closing quote written as a separate token: `married . ''`.
        let mut k2 = k;
        while k2 < n && chars[k2].1 == ' ' {
            k2 += 1;
        }
        if k2 + 1 < n && chars[k2].1 == '\'' && chars[k2 + 1].1 == '\'' {
            let after = k2 + 2;
            if after >= n || chars[after].1.is_whitespace() {
                k = after;
            }
        }
        // A footnote marker after the sentence: `honesty. ¹`, `first. [14]`.
        let mut k3 = k;
        while k3 < n && chars[k3].1 == ' ' {
            k3 += 1;
        }
        let mut k4 = k3;
        while k4 < n && is_superscript_digit(chars[k4].1) {
            k4 += 1;
        }
        if k4 == k3 && k3 < n && chars[k3].1 == '[' {
            let mut d = k3 + 1;
            while d < n && chars[d].1.is_ascii_digit() {
                d += 1;
            }
            if d > k3 + 1 && d < n && chars[d].1 == ']' {
                k4 = d + 1;
            }
        }
        if k4 > k3 && (k4 >= n || chars[k4].1.is_whitespace()) {
            k = k4;
        }
        last_nonspace = k;
        // Whitespace (or the end) must follow.
        if k < n && !chars[k].1.is_whitespace() {
            i = k;
            continue;
        }
        // The next word.
        let mut m = k;
        let mut para = false;
        while m < n && chars[m].1.is_whitespace() {
            if chars[m].1 == '\n' && paragraph_break_at(&chars, m) {
                para = true;
            }
            m += 1;
        }
        let boundary = if m >= n || para {
            true
        } else {
            let (word_before, before_word) = word_before(&chars, i);
            ends_sentence(
                &chars,
                m,
                &word_before,
                before_word,
                single_period,
                ellipsis,
                quoted && chars[i..j].iter().any(|&(_, ch)| matches!(ch, '!' | '?')),
            )
        };
        if boundary && let Some(s) = start.take() {
            spans.push(Span {
                start: byte_at(s),
                end: byte_at(k),
            });
        }
        i = k;
    }
    if let Some(s) = start {
        spans.push(Span {
            start: byte_at(s),
            end: byte_at(last_nonspace),
        });
    }
    spans
}

fn is_superscript_digit(c: char) -> bool {
    matches!(c, '¹' | '²' | '³' | '\u{2070}' | '\u{2074}'..='\u{2079}')
}

fn is_terminal(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '‽')
}

/// Whether the `\n` at char index `i` starts a blank line (only spaces until the next `\n`).
fn paragraph_break_at(chars: &[(usize, char)], i: usize) -> bool {
    let mut j = i + 1;
    while j < chars.len() {
        match chars[j].1 {
            '\n' => return true,
            ' ' | '\t' => j += 1,
            _ => return false,
        }
    }
    false
}

/// The word (letters and inner periods) that ends just before char index `i`, and the
/// character before that word.
fn word_before(chars: &[(usize, char)], i: usize) -> (String, Option<char>) {
    let mut s = i;
    while s > 0 {
        let c = chars[s - 1].1;
        if c.is_alphabetic() || (c == '.' && s >= 2 && chars[s - 2].1.is_alphabetic()) {
            s -= 1;
        } else {
            break;
        }
    }
    let word = chars[s..i].iter().map(|&(_, c)| c).collect();
    (word, s.checked_sub(1).map(|p| chars[p].1))
}

/// Decides a candidate boundary whose next word starts at char index `m`.
fn ends_sentence(
    chars: &[(usize, char)],
    m: usize,
    word: &str,
    before_word: Option<char>,
    single_period: bool,
    ellipsis: bool,
    quoted_exclamation: bool,
) -> bool {
    let next = chars[m].1;
    // The first letter of the next word, past opening quotes and brackets.
    let mut q = m;
    while q < chars.len() && (OPENERS.contains(&chars[q].1) || chars[q].1 == ' ') {
        q += 1;
        if q - m > 4 {
            break;
        }
    }
    let first = chars.get(q).map(|&(_, c)| c).unwrap_or(' ');
    // A lowercase next word continues the sentence (also behind an opening quote).
    if first.is_lowercase() {
        return false;
    }
    if matches!(next, ',' | ';' | ':' | '-' | '—' | '–') {
        return false;
    }
    if single_period && !ellipsis {
        let lower = word.to_lowercase();
        let bare = lower.trim_end_matches('.');
        if TITLES.contains(&bare) && word.chars().next().is_some_and(char::is_uppercase) {
            return false;
        }
        if NEVER_FINAL.contains(&bare) {
            return false;
        }
        if NUMBERING.contains(&bare)
            && word.chars().next().is_some_and(char::is_uppercase)
            && starts_number(chars, m)
        {
            return false;
        }
        // An initial: one capital letter (not the pronoun I) before the period; a single
        // lowercase letter is an abbreviation (`n.`, `p.`, `v.`) unless it is `&c.` (etc.).
        let mut letters = word.chars();
        if let (Some(l), None) = (letters.next(), letters.next()) {
            if l.is_uppercase() && l != 'I' {
                return false;
            }
            if l.is_lowercase() && before_word != Some('&') {
                return false;
            }
        }
        // Dotted initials such as `J.R.` or `U.S.` before a capitalized name-like word stay
        // together only when they are initials of a name (all single capitals).
        if word.contains('.')
            && word
                .split('.')
                .all(|p| p.chars().count() == 1 && p.chars().all(char::is_uppercase))
            && first.is_uppercase()
            && next_word_is_name_like(chars, q)
        {
            return false;
        }
    }
    if quoted_exclamation && first.is_uppercase() && speech_verb_follows(chars, q) {
        return false;
    }
    true
}

/// Whether the text at `m` starts with a digit or an uppercase Roman numeral token.
fn starts_number(chars: &[(usize, char)], m: usize) -> bool {
    let mut j = m;
    let mut roman = 0;
    while j < chars.len() {
        let c = chars[j].1;
        if c.is_ascii_digit() {
            return true;
        }
        if matches!(c, 'I' | 'V' | 'X' | 'L' | 'C' | 'D' | 'M') {
            roman += 1;
            j += 1;
            continue;
        }
        break;
    }
    roman > 0 && (j >= chars.len() || !chars[j].1.is_alphabetic())
}

/// Whether the word at `q` is followed by a word whose lowercase form is a speech verb. A
/// capitalized pronoun other than `I` starts a new sentence (`"Why?" He groaned.`): after a
/// closing quote, attribution is written `he said`.
fn speech_verb_follows(chars: &[(usize, char)], q: usize) -> bool {
    let mut j = q;
    while j < chars.len() && chars[j].1.is_alphabetic() {
        j += 1;
    }
    let first: String = chars[q..j].iter().map(|&(_, c)| c).collect();
    if matches!(
        first.as_str(),
        "He" | "She" | "It" | "They" | "We" | "You" | "This" | "That" | "There" | "Then"
    ) {
        return false;
    }
    while j < chars.len() && chars[j].1 == ' ' {
        j += 1;
    }
    let s = j;
    while j < chars.len() && chars[j].1.is_alphabetic() {
        j += 1;
    }
    let verb: String = chars[s..j].iter().map(|&(_, c)| c).collect();
    SPEECH_VERBS.contains(&verb.to_lowercase().as_str())
}

/// A capitalized word that is not a common sentence starter (a rough proper-name test).
fn next_word_is_name_like(chars: &[(usize, char)], q: usize) -> bool {
    let mut j = q;
    while j < chars.len() && chars[j].1.is_alphabetic() {
        j += 1;
    }
    let w: String = chars[q..j].iter().map(|&(_, c)| c).collect();
    !matches!(
        w.as_str(),
        "The"
            | "A"
            | "An"
            | "He"
            | "She"
            | "It"
            | "They"
            | "We"
            | "I"
            | "This"
            | "That"
            | "But"
            | "And"
            | "In"
            | "On"
            | "At"
            | "There"
            | "Then"
            | "His"
            | "Her"
            | "You"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_abbreviations() {
        assert_eq!(
            split_sentences("Mr. Bennet came. Dr. Jones left! Did he? Yes."),
            vec!["Mr. Bennet came.", "Dr. Jones left!", "Did he?", "Yes."]
        );
        assert_eq!(
            split_sentences("It cost 3.14 dollars. H. G. Wells wrote it, e.g. here. Next."),
            vec![
                "It cost 3.14 dollars.",
                "H. G. Wells wrote it, e.g. here.",
                "Next."
            ]
        );
        assert_eq!(
            split_sentences("See No. 7 and Chap. IV for more. Then stop."),
            vec!["See No. 7 and Chap. IV for more.", "Then stop."]
        );
    }

    #[test]
    fn quotes_dialogue_and_ellipses() {
        assert_eq!(
            split_sentences("\"Oh!\" said she. \"Stop!\" Tom cried. \"Go.\" He went."),
            vec![
                "\"Oh!\" said she.",
                "\"Stop!\" Tom cried.",
                "\"Go.\"",
                "He went."
            ]
        );
        assert_eq!(
            split_sentences("I wonder... Perhaps not. Well . . . and so on. End…"),
            vec![
                "I wonder...",
                "Perhaps not.",
                "Well . . . and so on.",
                "End…"
            ]
        );
        assert_eq!(
            split_sentences("Every friend must be glad . ''\n`` Yes , '' said he . Done"),
            vec![
                "Every friend must be glad . ''",
                "`` Yes , '' said he .",
                "Done"
            ]
        );
    }

    #[test]
    fn paragraphs_break_and_lines_do_not() {
        assert_eq!(
            split_sentences("CHAPTER I\n\nIt was a\nlong day. Night\n  \nfell"),
            vec!["CHAPTER I", "It was a\nlong day.", "Night", "fell"]
        );
    }

    #[test]
    fn spans_cover_every_non_space_char_once() {
        let text = "  A b. \"C d!\" e f? G…  H. I. J\n\n K.  ";
        let spans = sentence_spans(text);
        let mut covered = vec![false; text.len()];
        let mut prev_end = 0;
        for s in &spans {
            assert!(s.start >= prev_end && s.start < s.end);
            prev_end = s.end;
            let t = s.of(text);
            assert_eq!(t, t.trim());
            covered[s.start..s.end].fill(true);
        }
        for (b, ch) in text.char_indices() {
            if !ch.is_whitespace() {
                assert!(covered[b], "byte {b} {ch:?} in no span: {spans:?}");
            }
        }
    }
}
