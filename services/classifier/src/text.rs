//! Text as the classifier reads it: one normal form for every language
//! (lowercase, half-width, simplified characters), and word lists matched
//! in it with the boundaries each script needs.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Lowercase, full-width forms to ASCII, traditional Chinese characters to
/// simplified, `ё` to `е`, every run of white space to one space. Word
/// lists and model features both see text through this, so a list written
/// in simplified characters also matches a text in traditional ones.
pub fn normalize(s: &str) -> String {
    let simplified = fast2s::convert(s);
    let mut out = String::with_capacity(simplified.len());
    let mut space = false;
    for c in simplified.chars() {
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            'ё' | 'Ё' => 'е',
            _ => c,
        };
        if c.is_whitespace() {
            if !space && !out.is_empty() {
                out.push(' ');
            }
            space = true;
            continue;
        }
        space = false;
        out.extend(c.to_lowercase());
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Letters that form words separated by spaces (Latin, Cyrillic): a word
/// list entry in them matches whole words only.
pub fn is_word_letter(c: char) -> bool {
    c.is_ascii_alphanumeric() || ('\u{00C0}'..='\u{024F}').contains(&c) || ('\u{0400}'..='\u{04FF}').contains(&c)
}

/// Han characters and kana: written without spaces.
pub fn is_cjk(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}' | '\u{3041}'..='\u{309F}' | '\u{30A0}'..='\u{30FF}')
}

pub fn is_hangul(c: char) -> bool {
    matches!(c, '\u{AC00}'..='\u{D7A3}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}')
}

#[derive(Debug, Clone, Copy)]
struct Bounds {
    start: bool,
    end: bool,
}

/// A list of words, each tagged, found in normalized text. An entry that
/// starts with a Latin or Cyrillic letter must start a word; it must also
/// end one unless it ends in `*` (a stem: `пожар*` finds `пожара`). A
/// phrase may have stems inside too (`детск* сад*` finds `детский сад` and
/// `детского сада`). Han, kana and Hangul entries match anywhere (Korean
/// particles attach to the word: `가스가`).
#[derive(Debug, Clone)]
pub struct WordList<T> {
    automaton: Option<AhoCorasick>,
    entries: Vec<(T, Bounds, String)>,
    /// Phrases with a stem inside: their words, each a stem or not, found
    /// where the first word's text is found.
    phrases: Vec<(T, Phrase, String)>,
    phrase_starts: Option<AhoCorasick>,
}

/// The words of a phrase, each with whether it is a stem.
type Phrase = Vec<(String, bool)>;

/// Whether the words of a phrase follow each other in `text` from `at`
/// (a stem takes any continuation of letters; words are apart by spaces).
fn phrase_at(text: &str, at: usize, words: &[(String, bool)]) -> Option<usize> {
    let mut pos = at;
    for (i, (word, stem)) in words.iter().enumerate() {
        if i > 0 {
            let spaces = text[pos..].len() - text[pos..].trim_start_matches(' ').len();
            if spaces == 0 {
                return None;
            }
            pos += spaces;
        }
        if !text[pos..].starts_with(word.as_str()) {
            return None;
        }
        pos += word.len();
        let rest = &text[pos..];
        if *stem {
            pos += rest.len() - rest.trim_start_matches(is_word_letter).len();
        } else if rest.chars().next().is_some_and(is_word_letter) {
            return None;
        }
    }
    Some(pos)
}

/// One occurrence of a listed word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit<'a, T> {
    pub tag: &'a T,
    pub word: &'a str,
    pub start: usize,
    pub end: usize,
}

impl<T> WordList<T> {
    /// `longest`: report the leftmost-longest matches only (for place
    /// names, where `朝阳门` must win over `朝阳`); otherwise every match,
    /// overlapping.
    pub fn new(words: impl IntoIterator<Item = (T, String)>, longest: bool) -> Self {
        let mut entries = Vec::new();
        let mut patterns = Vec::new();
        let mut phrases = Vec::new();
        for (tag, word) in words {
            let stem = word.ends_with('*');
            if word.trim_end_matches('*').contains('*') {
                let norm = normalize(&word);
                let words: Vec<(String, bool)> =
                    norm.split(' ').filter(|w| !w.is_empty()).map(|w| (w.trim_end_matches('*').to_owned(), w.ends_with('*'))).collect();
                if !words.is_empty() {
                    phrases.push((tag, words, norm.replace('*', "")));
                }
                continue;
            }
            let norm = normalize(word.trim_end_matches('*'));
            if norm.is_empty() {
                continue;
            }
            let starts_word = norm.chars().next().is_some_and(is_word_letter);
            let ends_word = norm.chars().last().is_some_and(is_word_letter);
            patterns.push(norm.clone());
            entries.push((tag, Bounds { start: starts_word, end: ends_word && !stem }, norm));
        }
        let kind = if longest { MatchKind::LeftmostLongest } else { MatchKind::Standard };
        let automaton =
            (!patterns.is_empty()).then(|| AhoCorasickBuilder::new().match_kind(kind).build(&patterns).expect("word list automaton"));
        let phrase_starts = (!phrases.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .build(phrases.iter().map(|(_, w, _)| w[0].0.as_str()))
                .expect("phrase automaton")
        });
        WordList { automaton, entries, phrases, phrase_starts }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.phrases.is_empty()
    }

    /// Every listed word in `text` (already normalized), in text order.
    pub fn find<'a>(&'a self, text: &str) -> Vec<Hit<'a, T>> {
        let mut hits = self.find_words(text);
        if let Some(starts) = &self.phrase_starts {
            let before = hits.len();
            for m in starts.find_overlapping_iter(text) {
                let (tag, words, word) = &self.phrases[m.pattern().as_usize()];
                let at = m.start();
                if text[..at].chars().next_back().is_some_and(is_word_letter) {
                    continue;
                }
                if let Some(end) = phrase_at(text, at, words) {
                    hits.push(Hit { tag, word: word.as_str(), start: at, end });
                }
            }
            if hits.len() > before {
                hits.sort_by_key(|h| h.start);
            }
        }
        hits
    }

    fn find_words<'a>(&'a self, text: &str) -> Vec<Hit<'a, T>> {
        let Some(ac) = &self.automaton else { return Vec::new() };
        let keep = |m: aho_corasick::Match| {
            let (tag, bounds, word) = &self.entries[m.pattern().as_usize()];
            let before = text[..m.start()].chars().next_back();
            let after = text[m.end()..].chars().next();
            let ok = (!bounds.start || !before.is_some_and(is_word_letter)) && (!bounds.end || !after.is_some_and(is_word_letter));
            ok.then_some(Hit { tag, word: word.as_str(), start: m.start(), end: m.end() })
        };
        if ac.match_kind() == MatchKind::Standard {
            ac.find_overlapping_iter(text).filter_map(keep).collect()
        } else {
            ac.find_iter(text).filter_map(keep).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_normal_form_for_every_script() {
        assert_eq!(normalize("樓上漏水，電梯壞了"), "楼上漏水,电梯坏了");
        assert_eq!(normalize("ＧＡＳ  Leak\tNOW"), "gas leak now");
        assert_eq!(normalize("Пахнет ГАЗОМ, всё"), "пахнет газом, все");
    }

    #[test]
    fn latin_and_cyrillic_words_match_whole_words_or_stems() {
        let list = WordList::new([("fire", "fire".to_owned()), ("pozhar", "пожар*".to_owned()), ("gas", "煤气".to_owned())], false);
        let tags = |t: &str| list.find(&normalize(t)).into_iter().map(|h| *h.tag).collect::<Vec<_>>();
        assert_eq!(tags("There is a FIRE in the hall"), ["fire"]);
        assert!(tags("I was fired from my job").is_empty(), "fired is not fire");
        assert_eq!(tags("Пожара нет, но дым"), ["pozhar"]);
        assert_eq!(tags("楼道里有煤氣味"), ["gas"], "traditional characters match simplified words");
        let list = WordList::new([("kindergarten", "детск* сад*".to_owned()), ("wish", "хотел* бы узнать".to_owned())], false);
        let tags = |t: &str| list.find(&normalize(t)).into_iter().map(|h| *h.tag).collect::<Vec<_>>();
        assert_eq!(tags("Про детского сада у нас"), ["kindergarten"]);
        assert_eq!(tags("Хотела бы узнать, как"), ["wish"]);
        assert!(tags("детсад").is_empty());
    }

    #[test]
    fn place_names_take_the_longest_match() {
        let list = WordList::new([("county", "朝阳".to_owned()), ("street", "朝阳门".to_owned())], true);
        let hits = list.find("东城区朝阳门内大街");
        assert_eq!(hits.len(), 1);
        assert_eq!(*hits[0].tag, "street");
    }
}
