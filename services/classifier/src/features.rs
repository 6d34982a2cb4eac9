//! What the model sees of a request: hashed character n-grams of its text
//! (Han and kana: 1- and 2-grams; Hangul words: the word and its syllable
//! 1- to 3-grams; Latin and Cyrillic: words, word pairs and 3- to 5-grams
//! of letters), a lighter copy of the same from the address, and named
//! features from the city's rules (which category word lists and signals
//! the text shows). Hashing keeps the model's size fixed whatever the
//! vocabulary.

use crate::text::{is_cjk, is_hangul, is_word_letter};

/// A sparse feature vector: (bucket, value), buckets unique.
pub type Features = Vec<(u32, f32)>;

/// How text becomes features; saved with the model so that training and
/// use always agree.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureSpec {
    /// Number of hash buckets (a power of two).
    pub buckets: u32,
    /// Weight of the address's features next to the text's.
    pub address_weight: f32,
    /// Value of a named feature (a word list or a signal that fired).
    pub named_weight: f32,
}

impl Default for FeatureSpec {
    fn default() -> Self {
        FeatureSpec { buckets: 1 << 20, address_weight: 0.0, named_weight: 0.3 }
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms (the model file
/// depends on it).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Script {
    Cjk,
    Hangul,
    Word,
    Other,
}

fn script(c: char) -> Script {
    if is_cjk(c) {
        Script::Cjk
    } else if is_hangul(c) {
        Script::Hangul
    } else if is_word_letter(c) && !c.is_ascii_digit() {
        Script::Word
    } else {
        Script::Other
    }
}

/// Runs of one script, in order.
fn runs(text: &str) -> Vec<(Script, Vec<char>)> {
    let mut out: Vec<(Script, Vec<char>)> = Vec::new();
    for c in text.chars() {
        let s = script(c);
        match out.last_mut() {
            Some((last, chars)) if *last == s && s != Script::Other => chars.push(c),
            _ => out.push((s, vec![c])),
        }
    }
    out.retain(|(s, _)| *s != Script::Other);
    out
}

/// Collects counts of tokens, then turns them into a vector.
struct Bag {
    spec: FeatureSpec,
    counts: std::collections::BTreeMap<u32, f32>,
}

impl Bag {
    /// Counts one token: `kind` says which of a namespace's n-grams it is.
    fn add(&mut self, ns: &[u8], kind: &[u8], token: &str, weight: f32) {
        let bucket = (fnv1a(&[ns, kind, token.as_bytes()]) % u64::from(self.spec.buckets)) as u32;
        *self.counts.entry(bucket).or_insert(0.0) += weight;
    }

    fn text(&mut self, ns: &'static [u8], text: &str, weight: f32) {
        let mut previous_word: Option<String> = None;
        for (s, chars) in runs(text) {
            match s {
                Script::Cjk => {
                    for (i, c) in chars.iter().enumerate() {
                        let mut buf = [0u8; 4];
                        self.add(ns, b"1", c.encode_utf8(&mut buf), weight);
                        if let Some(n) = chars.get(i + 1) {
                            let pair: String = [*c, *n].iter().collect();
                            self.add(ns, b"2", &pair, weight);
                        }
                    }
                    previous_word = None;
                }
                Script::Hangul => {
                    let word: String = chars.iter().collect();
                    self.add(ns, b"k", &word, weight);
                    for n in 1..=3 {
                        for w in chars.windows(n) {
                            let g: String = w.iter().collect();
                            self.add(ns, &[b'h', n as u8], &g, weight);
                        }
                    }
                    previous_word = None;
                }
                Script::Word => {
                    let word: String = chars.iter().collect();
                    self.add(ns, b"w", &word, weight);
                    if let Some(p) = &previous_word {
                        self.add(ns, b"p", &format!("{p} {word}"), weight);
                    }
                    let marked: Vec<char> = std::iter::once('<').chain(chars.iter().copied()).chain(std::iter::once('>')).collect();
                    for n in 3..=5 {
                        for w in marked.windows(n) {
                            let g: String = w.iter().collect();
                            self.add(ns, b"g", &g, weight * 0.5);
                        }
                    }
                    previous_word = Some(word);
                }
                Script::Other => {}
            }
        }
    }
}

/// The features of a request: `text` and `address` normalized, `named`
/// the names of the rules that fired (`lex:water`, `sig:gas-smell`).
pub fn extract(spec: &FeatureSpec, text: &str, address: &str, named: &[String]) -> Features {
    // Log counts; the text and the address each scaled to unit length,
    // the address then weighted, before they are put together.
    let mut all: std::collections::BTreeMap<u32, f32> = std::collections::BTreeMap::new();
    for (ns, part, weight) in [(b"t", text, 1.0), (b"a", address, spec.address_weight)] {
        let mut bag = Bag { spec: *spec, counts: std::collections::BTreeMap::new() };
        bag.text(ns, part, 1.0);
        let norm = bag.counts.values().map(|c| (1.0 + c).ln().powi(2)).sum::<f32>().sqrt();
        if norm > 0.0 {
            for (b, c) in &bag.counts {
                *all.entry(*b).or_insert(0.0) += weight * (1.0 + c).ln() / norm;
            }
        }
    }
    for name in named {
        let b = (fnv1a(&[b"n", name.as_bytes()]) % u64::from(spec.buckets)) as u32;
        *all.entry(b).or_insert(0.0) += spec.named_weight;
    }
    all.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_deterministic_and_cover_every_script() {
        let spec = FeatureSpec::default();
        let a = extract(&spec, "楼上漏水 no water 물이 안 나와요 нет воды", "望京", &["lex:water".into()]);
        let b = extract(&spec, "楼上漏水 no water 물이 안 나와요 нет воды", "望京", &["lex:water".into()]);
        assert_eq!(a, b);
        assert!(a.len() > 40, "{}", a.len());
        assert!(a.windows(2).all(|w| w[0].0 < w[1].0), "sorted, unique buckets");
        assert!(extract(&spec, "", "", &[]).is_empty());
    }
}
