//! One request in, one classification out: the model's category, urgency
//! and whistle level, overruled where the city's signals say so (danger is
//! urgent; a dragged-on case is difficult), raised by the ticket history
//! (the same problem reported again at the same place), placed by the
//! gazetteer, with the model's confidence and runners-up. The service and
//! `whistle-classifier classify` both call [`Engine::classify`].

use std::path::Path;

use whistle_domain::city::{City, RepeatRule, SignalEffect};
use whistle_domain::{Alternative, Category, GeoPoint, Jurisdiction, Language, Urgency, WhistleLevel};

use crate::features::{FeatureSpec, Features, extract};
use crate::gazetteer::Gazetteer;
use crate::model::{Decisions, Model};
use crate::signals::Signals;
use crate::text::{WordList, normalize};
use crate::{Error, Result};

/// The heads of the model, in order.
pub const HEADS: [&str; 3] = ["category", "urgency", "whistle"];

/// The labels of each head, in the order the model's probabilities come.
pub fn head_labels() -> Vec<(&'static str, Vec<String>)> {
    vec![
        (HEADS[0], Category::ALL.iter().map(|c| c.as_str().to_owned()).collect()),
        (HEADS[1], Urgency::ALL.iter().map(|u| u.as_str().to_owned()).collect()),
        (HEADS[2], WhistleLevel::ALL.iter().map(|w| w.as_str().to_owned()).collect()),
    ]
}

/// What is known of a request when it is classified.
#[derive(Debug, Clone, Default)]
pub struct Input<'a> {
    pub text: &'a str,
    pub address: &'a str,
    pub point: Option<GeoPoint>,
    pub language: Language,
    /// The (month, day) it arrived (city time), when known.
    pub arrived: Option<(u8, u8)>,
    /// The category the citizen chose (an Open311 service), which stands.
    pub service: Option<Category>,
}

impl<'a> Input<'a> {
    /// What a request gives the classifier, with the day it arrived when known.
    pub fn of(request: &'a whistle_domain::Request, arrived: Option<(u8, u8)>) -> Self {
        Input {
            text: &request.text,
            address: &request.location.address,
            point: request.location.point,
            language: request.language,
            arrived,
            service: request.service,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub category: Category,
    pub urgency: Urgency,
    pub whistle_level: WhistleLevel,
    pub jurisdiction: Jurisdiction,
    pub language: Language,
    pub confidence: f32,
    pub runners_up: Vec<Alternative>,
    pub triage: bool,
    /// Why: `signal:<name>:<word>`, `place:…`, `repeat:<n>`.
    pub matched: Vec<String>,
}

/// The city's rules as the classifier reads them: the category word lists
/// (model features), the signals and the gazetteer.
#[derive(Clone)]
pub struct Rules {
    lexicon: WordList<Category>,
    concepts: WordList<String>,
    signals: Signals,
    gazetteer: Gazetteer,
    repeat: RepeatRule,
}

impl Rules {
    pub fn new(city: &City) -> Self {
        let c = &city.config.classification;
        let lexicon = WordList::new(c.categories.iter().flat_map(|r| r.keywords.iter().map(|k| (r.category, k.clone()))), false);
        Rules { lexicon, concepts: concepts(), signals: Signals::new(c), gazetteer: Gazetteer::new(city), repeat: c.repeat.clone() }
    }

    /// The concepts a text shows, each once, in name order.
    pub fn concepts_in(&self, text: &str) -> Vec<&str> {
        let mut found: Vec<&str> = self.concepts.find(&normalize(text)).into_iter().map(|h| h.tag.as_str()).collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    /// The features of a request, as the model sees them in training and in use.
    pub fn features(&self, spec: &FeatureSpec, text: &str, address: &str, arrived: Option<(u8, u8)>) -> Features {
        self.reading(spec, text, address, arrived).0
    }

    /// The features of a request and the effects of the signals that fired.
    pub fn reading(&self, spec: &FeatureSpec, text: &str, address: &str, arrived: Option<(u8, u8)>) -> (Features, Vec<SignalEffect>) {
        let (t, a) = (normalize(text), normalize(address));
        let (named, fired) = self.named(&t, &a, arrived);
        (extract(spec, &t, &a, &named), fired.iter().map(|f| f.effect).collect())
    }

    /// The category a request's words point to most, if any: the baseline
    /// the model is measured against.
    pub fn lexicon_vote(&self, text: &str) -> Option<Category> {
        let mut votes: std::collections::BTreeMap<Category, usize> = std::collections::BTreeMap::new();
        for h in self.lexicon.find(&normalize(text)) {
            *votes.entry(*h.tag).or_default() += 1;
        }
        votes.into_iter().max_by_key(|(_, n)| *n).map(|(c, _)| c)
    }

    fn named(&self, text: &str, address: &str, arrived: Option<(u8, u8)>) -> (Vec<String>, Vec<crate::signals::Fired>) {
        let mut named: Vec<String> = self.lexicon.find(text).into_iter().map(|h| format!("lex:{}", h.tag)).collect();
        named.extend(self.lexicon.find(address).into_iter().map(|h| format!("alex:{}", h.tag)));
        named.extend(self.concepts.find(text).into_iter().map(|h| format!("concept:{}", h.tag)));
        let fired = self.signals.fire(text, arrived);
        named.extend(fired.iter().map(|f| format!("sig:{}", f.name)));
        named.sort();
        named.dedup();
        (named, fired)
    }
}

/// The concept lexicon (`services/classifier/lexicon/`): the words of
/// every concept in the five languages, built into the binary.
const LEXICON: [(&str, &str); 5] = [
    ("zh", include_str!("../lexicon/zh.toml")),
    ("en", include_str!("../lexicon/en.toml")),
    ("ja", include_str!("../lexicon/ja.toml")),
    ("ko", include_str!("../lexicon/ko.toml")),
    ("ru", include_str!("../lexicon/ru.toml")),
];

#[derive(serde::Deserialize)]
struct LexiconFile {
    concepts: std::collections::BTreeMap<String, Vec<String>>,
}

/// Every concept word of every language, tagged with its concept.
fn concepts() -> WordList<String> {
    let mut words = Vec::new();
    for (language, text) in LEXICON {
        // A broken file is a build mistake; the unit tests load every one.
        let file: LexiconFile = toml::from_str(text).unwrap_or_else(|e| panic!("lexicon/{language}.toml: {e}"));
        for (concept, ws) in file.concepts {
            words.extend(ws.into_iter().map(|w| (concept.clone(), w)));
        }
    }
    WordList::new(words, false)
}

pub struct Engine {
    model: Model,
    rules: Rules,
    triage_below: f32,
    decisions: Decisions,
}

impl Engine {
    pub fn new(model: Model, rules: Rules, triage_below: f32) -> Result<Self> {
        if !(0.0..=1.0).contains(&triage_below) {
            return Err(Error::Config(format!("classifier.triage_below: {triage_below} is not between 0 and 1")));
        }
        let decisions = *model.decisions();
        Ok(Engine { model, rules, triage_below, decisions })
    }

    /// The same engine deciding with other thresholds (for tuning them).
    pub fn with_decisions(&self, decisions: Decisions) -> Engine {
        Engine { model: self.model.clone(), rules: self.rules.clone(), triage_below: self.triage_below, decisions }
    }

    pub fn load(model: &Path, city: &City, triage_below: f32) -> Result<Self> {
        Engine::new(Model::load(model)?, Rules::new(city), triage_below)
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn repeat_rule(&self) -> &RepeatRule {
        &self.rules.repeat
    }

    /// Everything but the ticket history.
    pub fn read(&self, input: &Input) -> Outcome {
        let (text, address) = (normalize(input.text), normalize(input.address));
        let (named, fired) = self.rules.named(&text, &address, input.arrived);
        let x = extract(self.model.features(), &text, &address, &named);
        let p = self.model.predict(&x);
        let mut ranked: Vec<(Category, f32)> = Category::ALL.iter().copied().zip(p[0].iter().copied()).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut matched: Vec<String> = fired.iter().map(|f| format!("signal:{}:{}", f.name, f.word)).collect();
        // The citizen's own choice of service stands; the model ranks the rest.
        if let Some(chosen) = input.service {
            ranked.retain(|(c, _)| *c != chosen);
            ranked.insert(0, (chosen, 1.0));
            matched.push(format!("service:{chosen}"));
        }
        let (category, confidence) = ranked[0];
        let effects: Vec<SignalEffect> = fired.iter().map(|f| f.effect).collect();
        let (urgency, whistle_level) = decide(&self.decisions, category, &p, &effects);
        let placed = self.rules.gazetteer.place(input.address, input.text, input.point.as_ref());
        matched.extend(placed.evidence);
        Outcome {
            category,
            urgency,
            whistle_level,
            jurisdiction: placed.jurisdiction,
            language: input.language,
            confidence,
            runners_up: ranked[1..4].iter().map(|(c, p)| Alternative { category: *c, probability: *p }).collect(),
            triage: confidence < self.triage_below,
            matched,
        }
    }

    /// The whole classification, given how many earlier reports of the same
    /// category at the same place the history holds (`None`: not known).
    pub fn finish(&self, mut o: Outcome, earlier: Option<u32>) -> Outcome {
        if let Some(n) = earlier {
            let repeat = &self.rules.repeat;
            let level = match repeat.difficult_after {
                Some(d) if n >= d => WhistleLevel::Difficult,
                _ if n >= repeat.key_after => WhistleLevel::Key,
                _ => WhistleLevel::Ordinary,
            };
            if level > o.whistle_level {
                o.whistle_level = level;
                o.matched.push(format!("repeat:{n}-earlier-in-{}d", repeat.window_days));
            }
        }
        o
    }

    pub fn classify(&self, input: &Input, earlier: Option<u32>) -> Outcome {
        self.finish(self.read(input), earlier)
    }
}

/// Urgency and whistle level from the model's probabilities `p` (every
/// head), the category chosen and the effects of the city's signals that
/// fired: the one place the engine and training's choice of thresholds
/// share.
pub fn decide(d: &Decisions, category: Category, p: &[Vec<f32>], effects: &[SignalEffect]) -> (Urgency, WhistleLevel) {
    let urgency = if effects.contains(&SignalEffect::Urgent) {
        Urgency::Urgent
    } else if category == Category::Consultation {
        Urgency::Consultation
    } else {
        // Urgent when the model is sure enough, else the likelier of
        // important and ordinary, raised to important where a signal says so.
        let u = &p[1];
        let likely = if u[Urgency::Urgent as usize] >= d.urgent_above {
            Urgency::Urgent
        } else if u[Urgency::Important as usize] >= d.important_ratio * u[Urgency::Ordinary as usize] {
            Urgency::Important
        } else {
            Urgency::Ordinary
        };
        if likely == Urgency::Ordinary && effects.contains(&SignalEffect::Important) { Urgency::Important } else { likely }
    };
    let w = &p[2];
    let mut whistle_level = if w[WhistleLevel::Difficult as usize] >= d.difficult_above {
        WhistleLevel::Difficult
    } else if w[WhistleLevel::Key as usize] >= d.key_above {
        WhistleLevel::Key
    } else {
        WhistleLevel::Ordinary
    };
    if effects.contains(&SignalEffect::Difficult) {
        whistle_level = WhistleLevel::Difficult;
    } else if effects.contains(&SignalEffect::Key) {
        whistle_level = whistle_level.max(WhistleLevel::Key);
    }
    (urgency, whistle_level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_of_the_lexicon_loads_with_the_same_concepts() {
        #[derive(serde::Deserialize)]
        struct Concepts {
            concepts: std::collections::BTreeMap<String, String>,
        }
        let names: Concepts = toml::from_str(include_str!("../lexicon/concepts.toml")).unwrap();
        for (language, text) in LEXICON {
            let file: LexiconFile = toml::from_str(text).unwrap_or_else(|e| panic!("{language}: {e}"));
            let unknown: Vec<&String> = file.concepts.keys().filter(|k| !names.concepts.contains_key(*k)).collect();
            assert!(unknown.is_empty(), "lexicon/{language}.toml: concepts not in concepts.toml: {unknown:?}");
        }
    }
}
