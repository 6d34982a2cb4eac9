//! Training and measuring: the model is trained on the corpus's train split
//! (and, on request, the desks' corrections from the events topic), its
//! decision thresholds chosen on the train split's out-of-fold readings, its
//! settings tried on dev, and measured once on test, which nothing is tuned
//! on.

use std::collections::HashMap;
use std::time::Instant;

use whistle_domain::city::SignalEffect;
use whistle_domain::{Category, EventKind, Language, Urgency, WhistleLevel};

use crate::corpus::{Example, Split};
use crate::engine::{Engine, Input, Rules, decide, head_labels};
use crate::eval::{ByGroup, Confusion};
use crate::features::{FeatureSpec, fnv1a};
use crate::model::{Decisions, Model, NaiveBayes, Sample, TrainSpec};

/// The training samples of these examples.
pub fn samples(rules: &Rules, spec: &FeatureSpec, examples: &[&Example]) -> Vec<Sample> {
    examples
        .iter()
        .map(|e| Sample {
            features: rules.features(spec, &e.text, &e.address, None),
            labels: vec![e.category as usize, e.urgency as usize, e.whistle as usize],
        })
        .collect()
}

/// Trains the model on the train split and `extra` (corrections), with
/// decision thresholds chosen on the train split's out-of-fold readings
/// ([`choose_decisions`]); also says what was chosen and why.
pub fn train(rules: &Rules, corpus: &[Example], extra: &[Example], features: FeatureSpec, spec: TrainSpec) -> (Model, String) {
    let chosen: Vec<&Example> = corpus.iter().filter(|e| e.split() == Split::Train).collect();
    let (decisions, why) = choose_decisions(&out_of_fold(rules, &chosen, extra, features, spec), spec.urgent_recall);
    (train_with(rules, &chosen, extra, features, spec, decisions), why)
}

fn train_with(
    rules: &Rules,
    chosen: &[&Example],
    extra: &[Example],
    features: FeatureSpec,
    spec: TrainSpec,
    decisions: Decisions,
) -> Model {
    let all: Vec<&Example> = chosen.iter().copied().chain(extra.iter()).collect();
    let samples = samples(rules, &features, &all);
    let trained_on = format!(
        "{} corpus requests (train split){}",
        chosen.len(),
        if extra.is_empty() { String::new() } else { format!(" and {} desk corrections", extra.len()) }
    );
    Model::train(features, spec, decisions, &head_labels(), &samples, trained_on)
}

/// How many folds the train split is cut into to choose the thresholds.
const FOLDS: u64 = 5;

/// One request as a model that never saw it reads it.
pub struct Scored {
    p: Vec<Vec<f32>>,
    effects: Vec<SignalEffect>,
    truth: Labels,
}

/// Every request of `chosen` read by a model trained without it: the
/// requests cut into [`FOLDS`] folds by a hash of their ids, each fold read
/// by a model trained on the others (and on `extra`, always).
pub fn out_of_fold(rules: &Rules, chosen: &[&Example], extra: &[Example], features: FeatureSpec, spec: TrainSpec) -> Vec<Scored> {
    let fold = |e: &Example| fnv1a(&[b"fold", e.id.as_bytes()]) % FOLDS;
    let mut scored = Vec::with_capacity(chosen.len());
    for k in 0..FOLDS {
        let rest: Vec<&Example> = chosen.iter().copied().filter(|e| fold(e) != k).collect();
        let model = train_with(rules, &rest, extra, features, spec, Decisions::default());
        for e in chosen.iter().filter(|e| fold(e) == k) {
            let (x, effects) = rules.reading(&features, &e.text, &e.address, None);
            scored.push(Scored { p: model.predict(&x), effects, truth: (e.category, e.urgency, e.whistle) });
        }
    }
    scored
}

/// The thresholds, chosen on out-of-fold readings: the highest urgent
/// threshold that still finds `goal` of the urgent requests (the city's
/// danger signals included), then the important ratio and the whistle
/// thresholds that get the most right. Also says what lower goals would
/// cost and save.
pub fn choose_decisions(scored: &[Scored], goal: f32) -> (Decisions, String) {
    let grid = |from: f32, to: f32, step: f32| -> Vec<f32> {
        let n = ((to - from) / step).round() as usize;
        (0..=n).map(|i| from + step * i as f32).collect()
    };
    let read = |d: &Decisions| -> Vec<(Urgency, WhistleLevel)> {
        scored.iter().map(|s| decide(d, Category::ALL[argmax(&s.p[0])], &s.p, &s.effects)).collect()
    };
    let share = |hits: usize, of: usize| if of == 0 { 0.0 } else { hits as f64 / of as f64 };
    // Recall and precision of urgent.
    let urgent_found = |d: &Decisions| {
        let r = read(d);
        let urgent = scored.iter().filter(|s| s.truth.1 == Urgency::Urgent).count();
        let flagged = r.iter().filter(|(u, _)| *u == Urgency::Urgent).count();
        let found = scored.iter().zip(&r).filter(|(s, (u, _))| s.truth.1 == Urgency::Urgent && *u == Urgency::Urgent).count();
        (share(found, urgent), share(found, flagged))
    };
    let urgent_recall = |d: &Decisions| urgent_found(d).0;
    let urgency_right = |d: &Decisions| share(scored.iter().zip(read(d)).filter(|(s, (u, _))| s.truth.1 == *u).count(), scored.len());
    let whistle_right = |d: &Decisions| share(scored.iter().zip(read(d)).filter(|(s, (_, w))| s.truth.2 == *w).count(), scored.len());
    let mut d = Decisions::default();
    // Highest first: the first that keeps the goal.
    let urgent = grid(0.02, 0.6, 0.01);
    let reached = urgent.iter().rev().copied().find(|u| urgent_recall(&Decisions { urgent_above: *u, ..d }) >= f64::from(goal));
    d.urgent_above = reached.unwrap_or(urgent[0]);
    let best = |candidates: Vec<Decisions>, score: &dyn Fn(&Decisions) -> f64| -> Decisions {
        let mut top = (f64::MIN, candidates[0]);
        for c in candidates {
            let s = score(&c);
            if s > top.0 {
                top = (s, c);
            }
        }
        top.1
    };
    d = best(grid(0.3, 1.6, 0.05).into_iter().map(|r| Decisions { important_ratio: r, ..d }).collect(), &urgency_right);
    let pairs: Vec<Decisions> = grid(0.2, 0.8, 0.05)
        .into_iter()
        .flat_map(|k| grid(0.2, 0.8, 0.05).into_iter().map(move |f| (k, f)))
        .map(|(k, f)| Decisions { key_above: k, difficult_above: f, ..d })
        .collect();
    d = best(pairs, &whistle_right);
    let mut why = format!(
        "thresholds chosen on {} out-of-fold readings of the train split ({FOLDS} folds): urgent above {:.2} (urgent recall {:.1}%, goal {:.0}%; {:.1}% of those flagged urgent are), important at {:.2} of ordinary (urgency {:.1}% right), key above {:.2}, difficult above {:.2} (whistle {:.1}% right)\n",
        scored.len(),
        d.urgent_above,
        100.0 * urgent_recall(&d),
        100.0 * goal,
        100.0 * urgent_found(&d).1,
        d.important_ratio,
        100.0 * urgency_right(&d),
        d.key_above,
        d.difficult_above,
        100.0 * whistle_right(&d)
    );
    if reached.is_none() {
        why += &format!("  no threshold finds {:.0}% of the urgent requests: the lowest tried ({:.2}) is used\n", 100.0 * goal, urgent[0]);
    }
    why += "  urgent above   urgent recall  urgent precision  urgency right   (out of fold; `train --urgent-recall` chooses)\n";
    for u in [0.05f32, 0.1, 0.2, 0.3, 0.4] {
        let c = Decisions { urgent_above: u, ..d };
        let (recall, precision) = urgent_found(&c);
        why += &format!("  {u:>12.2}   {:>12.1}%  {:>15.1}%  {:>12.1}%\n", 100.0 * recall, 100.0 * precision, 100.0 * urgency_right(&c));
    }
    (d, why)
}

/// What a classifier says of one request.
pub type Labels = (Category, Urgency, WhistleLevel);

/// The results of a classifier on labeled requests.
pub struct Evaluation {
    pub category: Confusion,
    pub urgency: Confusion,
    pub whistle: Confusion,
    pub by_language: ByGroup,
    /// Requests sent to triage, and how many of the others were right.
    pub triaged: u32,
    pub auto_correct: u32,
    pub auto_total: u32,
    /// Time to classify one request, microseconds, sorted.
    pub micros: Vec<u64>,
}

impl Evaluation {
    pub fn of(examples: &[&Example], mut predict: impl FnMut(&Example) -> (Labels, bool)) -> Self {
        let labels = head_labels();
        let mut e = Evaluation {
            category: Confusion::new(&labels[0].1),
            urgency: Confusion::new(&labels[1].1),
            whistle: Confusion::new(&labels[2].1),
            by_language: ByGroup::default(),
            triaged: 0,
            auto_correct: 0,
            auto_total: 0,
            micros: Vec::new(),
        };
        for ex in examples {
            let started = Instant::now();
            let ((c, u, w), triage) = predict(ex);
            e.micros.push(started.elapsed().as_micros() as u64);
            e.category.add(ex.category as usize, c as usize);
            e.urgency.add(ex.urgency as usize, u as usize);
            e.whistle.add(ex.whistle as usize, w as usize);
            let lang = ex.language.as_str();
            for group in [lang, "all"] {
                e.by_language.add(group, "category", c == ex.category);
                e.by_language.add(group, "urgency", u == ex.urgency);
                e.by_language.add(group, "whistle", w == ex.whistle);
            }
            if triage {
                e.triaged += 1;
            } else {
                e.auto_total += 1;
                e.auto_correct += u32::from(c == ex.category);
            }
        }
        e.micros.sort_unstable();
        e
    }

    pub fn urgent_recall(&self) -> f64 {
        self.urgency.recall(Urgency::Urgent as usize)
    }

    pub fn percentile_micros(&self, p: f64) -> u64 {
        if self.micros.is_empty() {
            return 0;
        }
        let i = ((self.micros.len() as f64 - 1.0) * p).round() as usize;
        self.micros[i]
    }

    /// Accuracy per language and head, as a table.
    pub fn language_table(&self) -> String {
        let mut out = String::from("  language   n   category  urgency  whistle\n");
        let mut groups: Vec<&String> = self.by_language.groups().filter(|g| *g != "all").collect();
        groups.sort_by_key(|g| Language::ALL.iter().position(|l| l.as_str() == g.as_str()));
        for g in groups.into_iter().chain(self.by_language.groups().filter(|g| *g == "all")) {
            let b = &self.by_language;
            out += &format!(
                "  {:<6} {:>5}   {:>7.1}%  {:>6.1}%  {:>6.1}%\n",
                g,
                b.count(g),
                100.0 * b.accuracy(g, "category"),
                100.0 * b.accuracy(g, "urgency"),
                100.0 * b.accuracy(g, "whistle")
            );
        }
        out
    }

    /// The full report: per language, per class, confusion matrices.
    pub fn report(&self, title: &str) -> String {
        let mut out = format!("== {title}\n{}", self.language_table());
        out += &format!(
            "  urgent recall {:.1}%; sent to triage {} of {} ({:.1}%), category right on {:.1}% of the rest\n",
            100.0 * self.urgent_recall(),
            self.triaged,
            self.category.total(),
            100.0 * crate::eval::ratio(self.triaged, self.category.total()),
            100.0 * crate::eval::ratio(self.auto_correct, self.auto_total)
        );
        out += &self.category.report("category");
        out += &self.urgency.report("urgency");
        out += &self.whistle.report("whistle");
        out
    }
}

/// The engine on examples (the service's path, without history).
pub fn evaluate_engine(engine: &Engine, examples: &[&Example]) -> Evaluation {
    Evaluation::of(examples, |ex| {
        let o =
            engine.read(&Input { text: &ex.text, address: &ex.address, point: None, language: ex.language, arrived: None, service: None });
        ((o.category, o.urgency, o.whistle_level), o.triage)
    })
}

fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

fn labels_of(p: &[Vec<f32>]) -> Labels {
    (Category::ALL[argmax(&p[0])], Urgency::ALL[argmax(&p[1])], WhistleLevel::ALL[argmax(&p[2])])
}

/// Side by side on one split: the keyword lists alone, naive Bayes, the
/// logistic regression alone, and the engine (regression and the rules).
pub fn compare(rules: &Rules, corpus: &[Example], split: Split, features: FeatureSpec, engine: &Engine) -> String {
    let train: Vec<&Example> = corpus.iter().filter(|e| e.split() == Split::Train).collect();
    let on: Vec<&Example> = corpus.iter().filter(|e| e.split() == split).collect();
    let samples = samples(rules, &features, &train);
    let cache: HashMap<&str, crate::features::Features> =
        on.iter().map(|e| (e.id.as_str(), rules.features(&features, &e.text, &e.address, None))).collect();
    let lexicon = Evaluation::of(&on, |e| {
        ((rules.lexicon_vote(&e.text).unwrap_or(Category::Other), Urgency::Ordinary, WhistleLevel::Ordinary), false)
    });
    let mut rows = vec![("keyword lists (the old way)", lexicon)];
    for alpha in [0.01f32, 0.1] {
        let nb = NaiveBayes::train(&head_labels(), &samples, alpha, features.buckets);
        let name: &'static str = if alpha < 0.05 { "naive Bayes, alpha 0.01" } else { "naive Bayes, alpha 0.1" };
        rows.push((name, Evaluation::of(&on, |e| (labels_of(&nb.predict(&cache[e.id.as_str()])), false))));
    }
    let lr = engine.model();
    rows.push(("logistic regression alone", Evaluation::of(&on, |e| (labels_of(&lr.predict(&cache[e.id.as_str()])), false))));
    rows.push(("logistic regression + city rules", evaluate_engine(engine, &on)));
    let mut out = format!("== methods compared on the {} split ({} requests)\n", split.as_str(), on.len());
    out += "  method                              category  urgency  whistle  urgent recall  worst language (category)\n";
    for (name, e) in &rows {
        let worst = Language::ALL
            .iter()
            .map(|l| (l.as_str(), e.by_language.accuracy(l.as_str(), "category")))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or(("-", 0.0));
        out += &format!(
            "  {:<34} {:>7.1}%  {:>6.1}%  {:>6.1}%  {:>12.1}%  {} {:.1}%\n",
            name,
            100.0 * e.category.accuracy(),
            100.0 * e.urgency.accuracy(),
            100.0 * e.whistle.accuracy(),
            100.0 * e.urgent_recall(),
            worst.0,
            100.0 * worst.1
        );
    }
    out
}

/// The desks' corrections on the events topic, as labeled requests: each
/// `reclassified` ticket with its request's text and its last correction.
pub fn corrections(events: impl IntoIterator<Item = whistle_domain::Event>) -> Vec<Example> {
    let mut requests: HashMap<whistle_domain::TicketId, (String, String, Language)> = HashMap::new();
    let mut fixed: std::collections::BTreeMap<String, Example> = std::collections::BTreeMap::new();
    for e in events {
        match &e.kind {
            EventKind::Received { request, .. } => {
                requests.insert(e.ticket_id, (request.text.clone(), request.location.address.clone(), request.language));
            }
            EventKind::Reclassified { category, urgency, whistle_level, .. } => {
                if let Some((text, address, language)) = requests.get(&e.ticket_id) {
                    let id = format!("correction-{}", e.ticket_id);
                    fixed.insert(
                        id.clone(),
                        Example {
                            id,
                            text: text.clone(),
                            address: address.clone(),
                            language: *language,
                            category: *category,
                            urgency: *urgency,
                            whistle: *whistle_level,
                            note: format!("corrected by {}", e.actor.id),
                        },
                    );
                }
            }
            _ => {}
        }
    }
    fixed.into_values().collect()
}

/// [`corrections`] read from the events topic of a broker.
pub async fn corrections_from(kafka: &whistle_runtime::KafkaConfig) -> crate::Result<Vec<Example>> {
    let cfg = kafka.clone();
    let topic = whistle_runtime::Topics::new(kafka).events();
    let events = tokio::task::spawn_blocking(move || {
        let mut events = Vec::new();
        whistle_runtime::kafka::scan_topic(&cfg, &topic, |m| {
            if let Ok(e) = whistle_proto::decode_event(&m.payload) {
                events.push(e);
            }
        })
        .map(|_| events)
    })
    .await
    .map_err(|e| whistle_runtime::Error::task("reading the corrections", e))??;
    Ok(corrections(events))
}

/// Tries settings around the defaults, one at a time, on the dev split
/// (never the test split): how the defaults were chosen.
pub fn tune(rules: &Rules, corpus: &[Example], triage_below: f32, only_thresholds: bool) -> String {
    let base_f = FeatureSpec::default();
    let base_t = TrainSpec::default();
    let mut variants: Vec<(String, FeatureSpec, TrainSpec)> = vec![("defaults".into(), base_f, base_t)];
    for epochs in [12, 20, 45] {
        variants.push((format!("epochs {epochs}"), base_f, TrainSpec { epochs, ..base_t }));
    }
    for learning_rate in [0.2, 0.8] {
        variants.push((format!("learning rate {learning_rate}"), base_f, TrainSpec { learning_rate, ..base_t }));
    }
    for l2 in [0.0, 1e-5] {
        variants.push((format!("l2 {l2}"), base_f, TrainSpec { l2, ..base_t }));
    }
    for address_weight in [0.2, 0.4] {
        variants.push((format!("address weight {address_weight}"), FeatureSpec { address_weight, ..base_f }, base_t));
    }
    for named_weight in [0.0, 0.15, 0.6] {
        variants.push((format!("named weight {named_weight}"), FeatureSpec { named_weight, ..base_f }, base_t));
    }
    variants.push(("buckets 2^18".into(), FeatureSpec { buckets: 1 << 18, ..base_f }, base_t));
    if only_thresholds {
        variants.clear();
    }
    let dev: Vec<&Example> = corpus.iter().filter(|e| e.split() == Split::Dev).collect();
    let mut out = format!(
        "== settings tried on the dev split ({} requests)\n  setting                 category  urgency  whistle   zh     en     ja     ko     ru\n",
        dev.len()
    );
    for (name, f, t) in variants {
        let (model, _) = train(rules, corpus, &[], f, t);
        let mut bytes = Vec::new();
        let _ = model.write(&mut bytes);
        let Ok(model) = Model::read(&bytes) else { continue };
        let Ok(engine) = Engine::new(model, rules.clone(), triage_below) else { continue };
        let e = evaluate_engine(&engine, &dev);
        let b = &e.by_language;
        out += &format!(
            "  {:<22} {:>7.1}%  {:>6.1}%  {:>6.1}%  {}\n",
            name,
            100.0 * b.accuracy("all", "category"),
            100.0 * b.accuracy("all", "urgency"),
            100.0 * b.accuracy("all", "whistle"),
            Language::ALL.iter().map(|l| format!("{:>5.1}%", 100.0 * b.accuracy(l.as_str(), "category"))).collect::<Vec<_>>().join(" ")
        );
    }
    // The decision thresholds around those training chose, on one model
    // trained with the defaults.
    let (model, why) = train(rules, corpus, &[], base_f, base_t);
    let chosen = *model.decisions();
    out += &format!("  {why}");
    let Ok(engine) = Engine::new(model, rules.clone(), triage_below) else {
        return out;
    };
    out += "  urgent above / important ratio   urgency  urgent recall  important recall\n";
    for u in [0.5 * chosen.urgent_above, chosen.urgent_above, 0.1, 0.2, 0.3] {
        for r in [0.5f32, 0.7, 0.85, 1.0] {
            let engine = engine.with_decisions(Decisions { urgent_above: u, important_ratio: r, ..chosen });
            let e = evaluate_engine(&engine, &dev);
            out += &format!(
                "  {u:.2} / {r:.2}                      {:>6.1}%  {:>12.1}%  {:>15.1}%\n",
                100.0 * e.urgency.accuracy(),
                100.0 * e.urgent_recall(),
                100.0 * e.urgency.recall(Urgency::Important as usize)
            );
        }
    }
    out += "  key above / difficult above   whistle  key recall  difficult recall\n";
    for k in [0.3f32, 0.4, 0.5, 0.6] {
        for d in [0.3f32, 0.4, 0.5, 0.6] {
            let engine = engine.with_decisions(Decisions { key_above: k, difficult_above: d, ..chosen });
            let e = evaluate_engine(&engine, &dev);
            out += &format!(
                "  {k:.2} / {d:.2}                    {:>6.1}%  {:>9.1}%  {:>15.1}%\n",
                100.0 * e.whistle.accuracy(),
                100.0 * e.whistle.recall(WhistleLevel::Key as usize),
                100.0 * e.whistle.recall(WhistleLevel::Difficult as usize)
            );
        }
    }
    out
}
