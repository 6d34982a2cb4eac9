//! The knowledge base: the city's answers to the questions citizens ask
//! most, each with the questions in people's own words (several phrasings,
//! in the five languages), the answer in each language, the category, the
//! source department and the period it is valid. A consultation is
//! matched against each entry as one document (all its phrasings, and its
//! answers at a lower weight): text becomes features (Chinese and Japanese
//! characters as pairs, since they are written without spaces; other words
//! whole and as three-letter pieces, so a Russian ending does not hide a
//! word), and entries are ranked by BM25, divided by the most the question
//! could score so it reads 0 to 1. The best entry's score, and how far the
//! next one trails it, say whether to answer at once, to suggest, or to
//! leave it to a desk.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use crate::{Category, Error, Language, Result};

/// One entry as the city writes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub category: Category,
    pub department: String,
    /// `YYYY-MM-DD`, both days included.
    pub valid_from: String,
    pub valid_until: String,
    pub questions: BTreeMap<String, Vec<String>>,
    pub answers: BTreeMap<String, String>,
}

impl Entry {
    fn valid_on(&self, day: time::Date) -> bool {
        let day = day.to_string();
        self.valid_from <= day && day <= self.valid_until
    }
}

/// The base's file (`deploy/config/knowledge.toml`): `[[entries]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeFile {
    pub entries: Vec<Entry>,
}

/// What to do with a consultation, by its best match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Sure enough to answer at once, without a desk.
    Answer,
    /// Worth showing a desk, which answers with one action or sends it on.
    Suggest,
    /// Nothing close: dispatched as any other request.
    None,
}

/// The thresholds of the verdict: the best entry's score (0 to 1), and how
/// far the next entry must trail it (its score at most `answer_ratio` of
/// the best) to answer; `suggest` to show it to a desk.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub answer: f32,
    pub answer_ratio: f32,
    pub suggest: f32,
}

impl Default for Thresholds {
    /// Chosen on the tune half of the demo's labeled set
    /// (`whistle-classifier answers --tune`).
    fn default() -> Self {
        Thresholds { answer: 0.30, answer_ratio: 0.6, suggest: 0.12 }
    }
}

/// One entry a text matched, with how well.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub entry: usize,
    pub score: f32,
}

/// BM25's saturation and length normalisation.
const K1: f32 = 1.2;
const B: f32 = 0.75;
/// How much an entry's answers count beside its questions.
const ANSWER_WEIGHT: f32 = 0.3;

/// The base, indexed for matching.
pub struct KnowledgeBase {
    entries: Vec<Entry>,
    /// Feature -> (its rarity, the entries that have it with their weight).
    postings: HashMap<String, (f32, Vec<(usize, f32)>)>,
    /// Each entry's length (the sum of its weights), over the average.
    length: Vec<f32>,
}

impl std::fmt::Debug for KnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeBase").field("entries", &self.entries.len()).field("features", &self.postings.len()).finish()
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xf900..=0xfaff | 0xac00..=0xd7af)
}

/// The features of a text with their weights: CJK and Hangul runs as
/// character pairs (and single characters, weakly), other words whole and
/// in three-letter pieces.
pub fn features(text: &str) -> Vec<(String, f32)> {
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    let mut run: Vec<char> = Vec::new();
    let mut word = String::new();
    let flush_run = |run: &mut Vec<char>, out: &mut Vec<(String, f32)>| {
        for w in run.windows(2) {
            out.push((format!("b:{}{}", w[0], w[1]), 1.0));
        }
        for c in run.iter() {
            out.push((format!("c:{c}"), 0.3));
        }
        run.clear();
    };
    let flush_word = |word: &mut String, out: &mut Vec<(String, f32)>| {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() >= 2 {
            out.push((format!("w:{word}"), 1.0));
        }
        if chars.len() > 3 {
            let padded: Vec<char> = std::iter::once('^').chain(chars.iter().copied()).chain(std::iter::once('$')).collect();
            for w in padded.windows(3) {
                out.push((format!("t:{}", w.iter().collect::<String>()), 0.5));
            }
        }
        word.clear();
    };
    for c in lower.chars() {
        if is_cjk(c) {
            flush_word(&mut word, &mut out);
            run.push(c);
        } else if c.is_alphanumeric() {
            flush_run(&mut run, &mut out);
            word.push(c);
        } else {
            flush_run(&mut run, &mut out);
            flush_word(&mut word, &mut out);
        }
    }
    flush_run(&mut run, &mut out);
    flush_word(&mut word, &mut out);
    out
}

impl KnowledgeBase {
    /// Indexes the entries; refuses one without a Chinese question and
    /// answer, a duplicate id, an unknown language or a bad date.
    pub fn new(entries: Vec<Entry>) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        for e in &entries {
            let bad = |why: String| Error::invalid("knowledge", format!("entry {:?}: {why}", e.id));
            if !seen.insert(e.id.clone()) {
                return Err(bad("the id is used twice".into()));
            }
            if e.questions.get("zh").is_none_or(|q| q.is_empty()) || e.answers.get("zh").is_none_or(|a| a.trim().is_empty()) {
                return Err(bad("needs Chinese questions and a Chinese answer".into()));
            }
            for lang in e.questions.keys().chain(e.answers.keys()) {
                Language::parse(lang).map_err(|_| bad(format!("unknown language {lang:?}")))?;
            }
            let day = time::macros::format_description!("[year]-[month]-[day]");
            for d in [&e.valid_from, &e.valid_until] {
                time::Date::parse(d, day).map_err(|_| bad(format!("{d:?} is not a date like 2026-01-01")))?;
            }
        }
        let mut postings: HashMap<String, (f32, Vec<(usize, f32)>)> = HashMap::new();
        let mut length = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let mut tf: HashMap<String, f32> = HashMap::new();
            for q in e.questions.values().flatten() {
                for (f, w) in features(q) {
                    *tf.entry(f).or_insert(0.0) += w;
                }
            }
            for a in e.answers.values() {
                for (f, w) in features(a) {
                    *tf.entry(f).or_insert(0.0) += w * ANSWER_WEIGHT;
                }
            }
            length.push(tf.values().sum::<f32>());
            for (f, w) in tf {
                postings.entry(f).or_insert((0.0, Vec::new())).1.push((i, w));
            }
        }
        let n = entries.len() as f32;
        for (idf, list) in postings.values_mut() {
            *idf = ((1.0 + n) / (1.0 + list.len() as f32)).ln() + 1.0;
        }
        let avg = (length.iter().sum::<f32>() / n.max(1.0)).max(f32::EPSILON);
        for l in &mut length {
            *l /= avg;
        }
        Ok(KnowledgeBase { entries, postings, length })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// The entries valid on `day` that `text` is closest to, best first.
    pub fn search(&self, text: &str, day: time::Date, limit: usize) -> Vec<Hit> {
        let mut query: HashMap<String, f32> = HashMap::new();
        for (f, w) in features(text) {
            if self.postings.contains_key(&f) {
                *query.entry(f).or_insert(0.0) += w;
            }
        }
        let most: f32 = query.iter().map(|(f, w)| w * self.postings[f].0 * (K1 + 1.0)).sum();
        if most <= 0.0 {
            return Vec::new();
        }
        let mut score = vec![0.0f32; self.entries.len()];
        for (f, qw) in &query {
            let (idf, list) = &self.postings[f];
            for (entry, x) in list {
                score[*entry] += qw * idf * (x * (K1 + 1.0)) / (x + K1 * (1.0 - B + B * self.length[*entry]));
            }
        }
        let mut hits: Vec<Hit> = score
            .into_iter()
            .enumerate()
            .filter(|(e, s)| *s > 0.0 && self.entries[*e].valid_on(day))
            .map(|(entry, s)| Hit { entry, score: s / most })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.entry.cmp(&b.entry)));
        hits.truncate(limit);
        hits
    }

    /// Whether to answer, suggest or leave it, by the best hits.
    pub fn verdict(hits: &[Hit], t: &Thresholds) -> Verdict {
        let Some(top) = hits.first() else { return Verdict::None };
        let next = hits.get(1).map_or(0.0, |h| h.score);
        if top.score >= t.answer && next <= t.answer_ratio * top.score {
            Verdict::Answer
        } else if top.score >= t.suggest {
            Verdict::Suggest
        } else {
            Verdict::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, zh: &[&str], en: &[&str], until: &str) -> Entry {
        Entry {
            id: id.into(),
            category: Category::Consultation,
            department: "市政务服务局".into(),
            valid_from: "2026-01-01".into(),
            valid_until: until.into(),
            questions: BTreeMap::from([
                ("zh".to_owned(), zh.iter().map(|s| s.to_string()).collect()),
                ("en".to_owned(), en.iter().map(|s| s.to_string()).collect()),
            ]),
            answers: BTreeMap::from([("zh".to_owned(), format!("{id} 的答复")), ("en".to_owned(), format!("answer of {id}"))]),
        }
    }

    fn base() -> KnowledgeBase {
        KnowledgeBase::new(vec![
            entry("permit-apply", &["居住证怎么办理", "办居住证需要什么材料"], &["How do I apply for a residence permit?"], "2027-12-31"),
            entry(
                "permit-renew",
                &["居住证到期了怎么续签", "居住证每年签注在哪里办"],
                &["How do I renew my residence permit?"],
                "2027-12-31",
            ),
            entry("heating-start", &["今年什么时候开始供暖", "供暖季是哪天开始"], &["When does the heating season start?"], "2026-03-15"),
        ])
        .unwrap()
    }

    const DAY: time::Date = time::macros::date!(2026 - 02 - 01);

    #[test]
    fn text_becomes_character_pairs_and_words() {
        let f: Vec<String> = features("居住证 Residence").into_iter().map(|(f, _)| f).collect();
        assert!(f.contains(&"b:居住".to_owned()) && f.contains(&"b:住证".to_owned()) && f.contains(&"w:residence".to_owned()));
        assert!(f.contains(&"t:^re".to_owned()), "{f:?}");
    }

    #[test]
    fn a_question_finds_its_entry_in_either_language_and_not_its_neighbour() {
        let kb = base();
        let hits = kb.search("请问外地人办居住证要带哪些材料", DAY, 3);
        assert_eq!(kb.entries()[hits[0].entry].id, "permit-apply", "{hits:?}");
        let hits = kb.search("how can I renew the residence permit", DAY, 3);
        assert_eq!(kb.entries()[hits[0].entry].id, "permit-renew", "{hits:?}");
        assert_eq!(kb.entries()[kb.search("供暖季什么时候开始", DAY, 1)[0].entry].id, "heating-start");
        let later = time::macros::date!(2026 - 06 - 01);
        assert!(kb.search("供暖季什么时候开始", later, 3).iter().all(|h| kb.entries()[h.entry].id != "heating-start"), "expired");
        assert!(kb.search("🙂", DAY, 3).is_empty());
    }

    #[test]
    fn the_verdict_needs_a_high_score_and_a_lead_over_the_next_entry() {
        let t = Thresholds { answer: 0.6, answer_ratio: 0.6, suggest: 0.3 };
        let h = |a: f32, b: f32| vec![Hit { entry: 0, score: a }, Hit { entry: 1, score: b }];
        assert_eq!(KnowledgeBase::verdict(&h(0.8, 0.4), &t), Verdict::Answer);
        assert_eq!(KnowledgeBase::verdict(&h(0.8, 0.75), &t), Verdict::Suggest, "two entries too close");
        assert_eq!(KnowledgeBase::verdict(&h(0.4, 0.1), &t), Verdict::Suggest);
        assert_eq!(KnowledgeBase::verdict(&h(0.2, 0.1), &t), Verdict::None);
        assert_eq!(KnowledgeBase::verdict(&[], &t), Verdict::None);
    }

    #[test]
    fn a_bad_entry_is_refused_naming_it() {
        let mut e = entry("x", &["问"], &[], "2027-01-01");
        let twice = KnowledgeBase::new(vec![e.clone(), e.clone()]).unwrap_err().to_string();
        assert!(twice.contains("\"x\"") && twice.contains("twice"), "{twice}");
        e.valid_until = "soon".into();
        assert!(KnowledgeBase::new(vec![e]).unwrap_err().to_string().contains("soon"));
        let mut e = entry("y", &[], &["q"], "2027-01-01");
        e.questions.remove("zh");
        assert!(KnowledgeBase::new(vec![e]).unwrap_err().to_string().contains("Chinese"));
    }
}
