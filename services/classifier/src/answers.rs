//! Direct answers from the knowledge base: which consultations would be
//! answered at once, which would wait on a desk with suggestions, and the
//! benchmark that says how often an answer would be wrong. (The service
//! does not answer yet: the benchmark shows the matcher is not sure enough
//! to; see `whistle-classifier answers`.)
//!
//! The benchmark reads a labeled set (`deploy/config/knowledge-eval.jsonl`:
//! `{"text", "language", "expected": <entry id or null>, "kind": covered |
//! uncovered | complaint}`), split by a hash of the text: thresholds are
//! chosen on the `tune` half (`whistle-classifier answers --tune`), the
//! figures come from the `test` half, per language.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use whistle_domain::knowledge::{Hit, KnowledgeBase, Thresholds, Verdict};

use crate::features::fnv1a;
use crate::{Error, Result};

/// How many entries a consultation shows a desk.
pub const SUGGESTED: usize = 3;

#[derive(Debug, Clone, Deserialize)]
pub struct Labeled {
    pub text: String,
    pub language: String,
    pub expected: Option<String>,
    pub kind: String,
}

/// `tune` or `test`, by the text.
pub fn split_of(text: &str) -> &'static str {
    if fnv1a(&[b"kb-split", text.as_bytes()]).is_multiple_of(2) { "tune" } else { "test" }
}

pub fn read_labeled(path: &Path) -> Result<Vec<Labeled>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| Error::Corpus(format!("{}:{}: {e}", path.display(), i + 1))))
        .collect()
}

/// The figures of one language (or all).
#[derive(Debug, Default, Clone, Copy)]
pub struct Score {
    /// Covered questions, and how many of them were answered rightly.
    pub covered: u32,
    pub answered_right: u32,
    /// Answers given at all, and the wrong ones among them (another entry,
    /// or an answer to an uncovered question or a complaint).
    pub answered: u32,
    pub answered_wrong: u32,
    /// Covered questions whose entry was among the suggestions (answered or not).
    pub suggested_right: u32,
    /// Uncovered questions and complaints.
    pub others: u32,
}

impl Score {
    pub fn precision(&self) -> f64 {
        if self.answered == 0 { 1.0 } else { f64::from(self.answered - self.answered_wrong) / f64::from(self.answered) }
    }

    /// Covered questions answered rightly at once.
    pub fn coverage(&self) -> f64 {
        if self.covered == 0 { 0.0 } else { f64::from(self.answered_right) / f64::from(self.covered) }
    }

    pub fn suggest_recall(&self) -> f64 {
        if self.covered == 0 { 0.0 } else { f64::from(self.suggested_right) / f64::from(self.covered) }
    }
}

/// The best hits of every labeled question of `split` (all when `None`),
/// computed once: the thresholds only read them.
pub fn hits(kb: &KnowledgeBase, set: &[Labeled], split: Option<&str>, day: time::Date) -> Vec<(Labeled, Vec<Hit>)> {
    set.iter().filter(|l| split.is_none_or(|s| split_of(&l.text) == s)).map(|l| (l.clone(), kb.search(&l.text, day, SUGGESTED))).collect()
}

/// Scores the questions with the thresholds, per language (and `all`).
/// Every line is taken as a consultation: the benchmark measures the
/// matcher, not the classifier before it.
pub fn score(kb: &KnowledgeBase, t: &Thresholds, asked: &[(Labeled, Vec<Hit>)]) -> BTreeMap<String, Score> {
    let mut by: BTreeMap<String, Score> = BTreeMap::new();
    for (l, hits) in asked {
        let answered = KnowledgeBase::verdict(hits, t) == Verdict::Answer;
        let shown: Vec<&str> = hits.iter().filter(|h| h.score >= t.suggest).map(|h| kb.entries()[h.entry].id.as_str()).collect();
        for key in [l.language.clone(), "all".to_owned()] {
            let s = by.entry(key).or_default();
            match &l.expected {
                Some(want) => {
                    s.covered += 1;
                    if shown.contains(&want.as_str()) {
                        s.suggested_right += 1;
                    }
                    if answered {
                        s.answered += 1;
                        if shown.first() == Some(&want.as_str()) {
                            s.answered_right += 1;
                        } else {
                            s.answered_wrong += 1;
                        }
                    }
                }
                None => {
                    s.others += 1;
                    if answered {
                        s.answered += 1;
                        s.answered_wrong += 1;
                    }
                }
            }
        }
    }
    by
}

pub fn report(by: &BTreeMap<String, Score>, t: &Thresholds) -> String {
    let mut out = format!(
        "thresholds: answer at a score >= {:.2} when the next entry scores at most {:.2} of it; suggest >= {:.2}\n{:<5} {:>8} {:>8} {:>10} {:>10} {:>10} {:>12}\n",
        t.answer, t.answer_ratio, t.suggest, "lang", "covered", "others", "answered", "precision", "coverage", "in top 3"
    );
    for (lang, s) in by {
        out += &format!(
            "{:<5} {:>8} {:>8} {:>10} {:>9.1}% {:>9.1}% {:>11.1}%\n",
            lang,
            s.covered,
            s.others,
            s.answered,
            s.precision() * 100.0,
            s.coverage() * 100.0,
            s.suggest_recall() * 100.0
        );
    }
    out
}

/// The thresholds that answer the most covered questions of the tune half
/// while every answer there is right at least `precision` of the time.
pub fn tune(kb: &KnowledgeBase, set: &[Labeled], precision: f64, day: time::Date) -> Option<(Thresholds, Score)> {
    let asked = hits(kb, set, Some("tune"), day);
    let mut best: Option<(Thresholds, Score)> = None;
    for a in (10..=60).step_by(2) {
        for r in [0.4, 0.5, 0.6, 0.7, 0.8, 0.9] {
            let t = Thresholds { answer: a as f32 / 100.0, answer_ratio: r, suggest: Thresholds::default().suggest };
            let s = score(kb, &t, &asked).get("all").copied().unwrap_or_default();
            if s.precision() >= precision && best.as_ref().is_none_or(|(_, b)| s.answered_right > b.answered_right) {
                best = Some((t, s));
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use whistle_domain::knowledge::Entry;

    fn entry(id: &str, zh: &[&str]) -> Entry {
        Entry {
            id: id.into(),
            category: whistle_domain::Category::Consultation,
            department: "d".into(),
            valid_from: "2026-01-01".into(),
            valid_until: "2027-12-31".into(),
            questions: BTreeMap::from([("zh".to_owned(), zh.iter().map(|s| s.to_string()).collect())]),
            answers: BTreeMap::from([("zh".to_owned(), format!("{id}的答复"))]),
        }
    }

    fn labeled(text: &str, expected: Option<&str>) -> Labeled {
        Labeled { text: text.into(), language: "zh".into(), expected: expected.map(str::to_owned), kind: "covered".into() }
    }

    #[test]
    fn a_wrong_answer_and_an_answer_to_an_uncovered_question_both_count_against_precision() {
        let kb = KnowledgeBase::new(vec![
            entry("permit", &["居住证怎么办理", "办居住证要什么材料"]),
            entry("heating", &["什么时候开始供暖", "供暖季从哪天开始"]),
        ])
        .unwrap();
        let day = time::macros::date!(2026 - 02 - 01);
        let set = [labeled("请问居住证怎么办理", Some("permit")), labeled("居住证怎么办理", Some("heating")), labeled("居住证办理", None)];
        let asked: Vec<(Labeled, Vec<Hit>)> = set.iter().map(|l| (l.clone(), kb.search(&l.text, day, SUGGESTED))).collect();
        let always = Thresholds { answer: 0.0, answer_ratio: 1.0, suggest: 0.0 };
        let s = score(&kb, &always, &asked)["all"];
        assert_eq!((s.covered, s.answered, s.answered_right, s.answered_wrong, s.others), (2, 3, 1, 2, 1));
        assert!((s.precision() - 1.0 / 3.0).abs() < 1e-9 && (s.coverage() - 0.5).abs() < 1e-9);
        let never = Thresholds { answer: 1.1, answer_ratio: 0.0, suggest: 0.0 };
        let s = score(&kb, &never, &asked)["all"];
        assert_eq!((s.answered, s.suggested_right), (0, 2), "no answers; both covered questions still see their entry suggested");
        assert_eq!(split_of("x"), split_of("x"), "a question always falls in the same half");
    }
}
