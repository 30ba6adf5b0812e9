//! Standardization and sentence splitting on the shared Gutenberg books.

use std::path::{Path, PathBuf};

use lexforge_data::{Normalization, StandardizeConfig, split_sentences, standardize};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/gutenberg")
}

/// `(path, has_pg_boilerplate)` for every book of `books.csv`.
fn catalogue() -> Vec<(String, bool)> {
    let mut reader = csv::Reader::from_path(corpus().join("books.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (path, flag) = (col("path"), col("has_pg_boilerplate"));
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[path].to_owned(), &r[flag] == "true")
        })
        .collect()
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.to_ascii_lowercase().find(&needle.to_ascii_lowercase())
}

/// An independent, simpler oracle for "the real text": everything between the line holding the
/// start marker and the first footer line, minus blank-line paragraphs that name Project
/// Gutenberg and the "Produced by" / "Transcribed from" credit paragraphs.
fn real_text(raw: &str) -> String {
    let raw = raw.trim_start_matches('\u{feff}').replace("\r\n", "\n");
    let lines: Vec<&str> = raw.split('\n').collect();
    let start = lines
        .iter()
        .position(|l| find_ci(l, "START OF TH").is_some() && find_ci(l, "GUTENBERG").is_some())
        .map_or(0, |i| i + 1);
    let end = lines
        .iter()
        .enumerate()
        .skip(start)
        .find(|(_, l)| {
            (find_ci(l, "END OF TH").is_some() && find_ci(l, "GUTENBERG").is_some())
                || find_ci(l, "End of Project Gutenberg").is_some()
                || find_ci(l, "End of the Project Gutenberg").is_some()
        })
        .map_or(lines.len(), |(i, _)| i);
    let body = lines[start..end].join("\n");
    body.split("\n\n")
        .filter(|p| {
            let t = p.trim();
            !(find_ci(t, "project gutenberg").is_some()
                || t.starts_with("Produced by")
                || t.starts_with("E-text prepared by")
                || t.starts_with("Transcribed from"))
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn boilerplate_is_gone_and_the_real_text_kept_in_every_flagged_book() {
    let books = catalogue();
    let flagged: Vec<&(String, bool)> = books.iter().filter(|(_, f)| *f).collect();
    assert!(
        flagged.len() >= 20,
        "books.csv flags {} books",
        flagged.len()
    );
    let plain = StandardizeConfig {
        normalization: Normalization::None,
        ..StandardizeConfig::default()
    };
    for (path, _) in flagged {
        let raw = std::fs::read_to_string(corpus().join(path)).unwrap();
        let out = standardize(&raw, &StandardizeConfig::default());
        assert!(out.boilerplate.found(), "{path}: nothing found");
        for phrase in [
            "Project Gutenberg",
            "START OF THE PROJECT",
            "START OF THIS PROJECT",
            "END OF THE PROJECT",
            "END OF THIS PROJECT",
            "*** START OF",
            "*** END OF",
            "Literary Archive Foundation",
            "SMALL PRINT",
            "FULL LICENSE",
            "gutenberg.org",
        ] {
            assert!(
                find_ci(&out.text, phrase).is_none(),
                "{path}: {phrase:?} remains near {:?}",
                find_ci(&out.text, phrase).map(|i| &out.text[i.saturating_sub(80)..i + 40])
            );
        }
        let ours = collapse(&standardize(&raw, &plain).text);
        let real = collapse(&real_text(&raw));
        let head: String = real.chars().take(200).collect();
        let tail: String = {
            let n = real.chars().count();
            real.chars().skip(n.saturating_sub(200)).collect()
        };
        assert!(
            ours.starts_with(&head),
            "{path}: the first 200 characters differ:\n ours {:?}\n real {head:?}",
            ours.chars().take(200).collect::<String>()
        );
        assert!(
            ours.ends_with(&tail),
            "{path}: the last 200 characters differ:\n ours {:?}\n real {tail:?}",
            {
                let n = ours.chars().count();
                ours.chars().skip(n.saturating_sub(200)).collect::<String>()
            }
        );
    }
}

#[test]
fn the_pre_cleaned_book_loses_its_licence_tail_and_unflagged_books_lose_nothing() {
    let raw =
        std::fs::read_to_string(corpus().join("books/g_k_chesterton/the_ball_and_the_cross.txt"))
            .unwrap();
    let out = standardize(&raw, &StandardizeConfig::default());
    assert!(out.boilerplate.footer_bytes > 1000);
    assert_eq!(out.boilerplate.header_bytes, 0);
    assert!(
        out.text
            .starts_with("[ The Ball and The Cross by G.K. Chesterton 1909 ]")
    );
    assert!(find_ci(&out.text, "gutenberg").is_none());
    for (path, flagged) in catalogue() {
        if flagged || path.contains("the_ball_and_the_cross") {
            continue;
        }
        let raw = std::fs::read_to_string(corpus().join(&path)).unwrap();
        let out = standardize(&raw, &StandardizeConfig::default());
        assert!(!out.boilerplate.found(), "{path}: {:?}", out.boilerplate);
        assert_eq!(
            collapse(&out.text).len(),
            collapse(
                &standardize(
                    &raw,
                    &StandardizeConfig {
                        strip_boilerplate: false,
                        ..StandardizeConfig::default()
                    }
                )
                .text
            )
            .len(),
            "{path}"
        );
    }
}

/// `(passage, gold sentences)` from the hand-labelled fixture.
fn labelled() -> Vec<(String, Vec<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sentences/tricky.txt");
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with("@ ") {
            out.push((String::new(), Vec::new()));
        } else {
            out.last_mut().unwrap().1.push(line.to_owned());
        }
    }
    for (passage, gold) in &mut out {
        *passage = gold.join(" ");
    }
    out
}

#[test]
fn sentence_splitter_gets_95_percent_of_the_hand_labelled_tricky_sentences() {
    let data = labelled();
    let total: usize = data.iter().map(|(_, g)| g.len()).sum();
    assert!(total >= 150, "{total} labelled sentences");
    let mut right = 0;
    let mut misses = Vec::new();
    for (passage, gold) in &data {
        let got = split_sentences(passage);
        for g in gold {
            if got.contains(&g.as_str()) {
                right += 1;
            } else {
                misses.push(g.clone());
            }
        }
    }
    let score = right as f64 / total as f64;
    eprintln!(
        "sentence splitter: {right}/{total} = {:.1}%; missed: {misses:#?}",
        100.0 * score
    );
    assert!(score >= 0.95, "{:.1}% < 95%", 100.0 * score);
}
