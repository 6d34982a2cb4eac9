//! The offline commands: `train` builds the model file from the corpus,
//! `classify` runs the service's classification over JSON lines, `eval`
//! prints the figures on the held-out test split.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use whistle_domain::{Contact, Language, Location, Request};

use crate::corpus::{self, Split};
use crate::engine::{Engine, Input, Outcome, Rules};
use crate::features::FeatureSpec;
use crate::model::{Model, TrainSpec};
use crate::training::{self, evaluate_engine};
use crate::{Error, Result};

/// Where the corpus lives in the repository.
pub const CORPUS_DIR: &str = "services/classifier/corpus";

pub struct TrainArgs {
    pub corpus: PathBuf,
    pub city: PathBuf,
    pub out: PathBuf,
    pub compare: bool,
    /// The desks' corrections read from the events topic, to fold in.
    pub corrections: Vec<corpus::Example>,
    pub triage_below: f32,
    /// The urgent recall the urgent threshold keeps on unseen requests.
    pub urgent_recall: f32,
}

/// Trains, saves, and prints what the model does on dev and test.
pub fn train(args: &TrainArgs, out: &mut impl Write) -> Result<()> {
    let city = whistle_runtime::city::load(&args.city)?;
    let examples = corpus::load(&args.corpus)?;
    let rules = Rules::new(&city);
    let features = FeatureSpec::default();
    let spec = TrainSpec { urgent_recall: args.urgent_recall, ..TrainSpec::default() };
    let counts = |s: Split| examples.iter().filter(|e| e.split() == s).count();
    let io = |e: std::io::Error| Error::Io(e.to_string());
    writeln!(
        out,
        "corpus {}: {} requests (train {}, dev {}, test {}); {} desk corrections",
        args.corpus.display(),
        examples.len(),
        counts(Split::Train),
        counts(Split::Dev),
        counts(Split::Test),
        args.corrections.len()
    )
    .map_err(io)?;
    let started = std::time::Instant::now();
    let (model, why) = training::train(&rules, &examples, &args.corrections, features, spec);
    model.save(&args.out)?;
    let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    writeln!(out, "trained in {:.1} s; wrote {} ({:.1} MB)", started.elapsed().as_secs_f64(), args.out.display(), size as f64 / 1e6)
        .map_err(io)?;
    write!(out, "{why}").map_err(io)?;
    let engine = Engine::new(Model::load(&args.out)?, rules, args.triage_below)?;
    if args.compare {
        let rules = Rules::new(&city);
        write!(out, "{}", training::compare(&rules, &examples, Split::Dev, features, &engine)).map_err(io)?;
    }
    for split in [Split::Dev, Split::Test] {
        let on: Vec<&corpus::Example> = examples.iter().filter(|e| e.split() == split).collect();
        let title = match split {
            Split::Test => "test split (held out: nothing is tuned on it)",
            Split::Dev | Split::Train => "dev split",
        };
        write!(out, "{}", evaluate_engine(&engine, &on).report(title)).map_err(io)?;
    }
    Ok(())
}

/// The figures the classification issue sets targets for, on the test split.
pub fn eval(corpus_dir: &Path, city: &Path, model_path: &Path, triage_below: f32, out: &mut impl Write) -> Result<bool> {
    let city = whistle_runtime::city::load(city)?;
    let engine = Engine::load(model_path, &city, triage_below)?;
    let examples = corpus::load(corpus_dir)?;
    let test: Vec<&corpus::Example> = examples.iter().filter(|e| e.split() == Split::Test).collect();
    let e = evaluate_engine(&engine, &test);
    // Time per request: every test request classified five times over.
    let mut micros = Vec::with_capacity(test.len() * 5);
    for _ in 0..5 {
        for ex in &test {
            let t = std::time::Instant::now();
            let o = engine.read(&Input {
                text: &ex.text,
                address: &ex.address,
                point: None,
                language: ex.language,
                arrived: None,
                service: None,
            });
            std::hint::black_box(o);
            micros.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    micros.sort_by(f64::total_cmp);
    let pct = |p: f64| micros[((micros.len() as f64 - 1.0) * p).round() as usize];
    let size = std::fs::metadata(model_path).map(|m| m.len()).unwrap_or(0);
    let detected = test.iter().filter(|ex| Language::detect(&ex.text) == Some(ex.language)).count();
    let io = |e: std::io::Error| Error::Io(e.to_string());
    writeln!(out, "== classifier benchmark: {} held-out test requests of {} ({})", test.len(), examples.len(), engine.model().trained_on())
        .map_err(io)?;
    write!(out, "{}", e.language_table()).map_err(io)?;
    let all = |h: &str| e.by_language.accuracy("all", h);
    let worst = Language::ALL
        .iter()
        .map(|l| (l.as_str(), e.by_language.accuracy(l.as_str(), "category")))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or(("-", 0.0));
    let rows = [
        ("category", 100.0 * all("category"), ">= 90%", all("category") >= 0.90),
        ("urgency", 100.0 * all("urgency"), ">= 90%", all("urgency") >= 0.90),
        ("whistle", 100.0 * all("whistle"), ">= 85%", all("whistle") >= 0.85),
        ("worst language, category", 100.0 * worst.1, ">= 85%", worst.1 >= 0.85),
        ("urgent recall", 100.0 * e.urgent_recall(), ">= 95%", e.urgent_recall() >= 0.95),
    ];
    writeln!(out, "  target                        measured   target   ").map_err(io)?;
    let mut met = true;
    for (name, value, target, ok) in rows {
        met &= ok;
        writeln!(out, "  {:<28} {:>8.1}%   {:<7}  {}", name, value, target, if ok { "met" } else { "MISSED" }).map_err(io)?;
    }
    let p99_ok = pct(0.99) <= 1000.0;
    let size_ok = size <= 20_000_000;
    met &= p99_ok && size_ok;
    writeln!(
        out,
        "  time per request p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs (target p99 <= 1 ms: {})",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        if p99_ok { "met" } else { "MISSED" }
    )
    .map_err(io)?;
    writeln!(out, "  model file {:.1} MB (target <= 20 MB: {})", size as f64 / 1e6, if size_ok { "met" } else { "MISSED" }).map_err(io)?;
    writeln!(
        out,
        "  worst language for category: {}; sent to triage {:.1}%; language told from the text {:.1}% right",
        worst.0,
        100.0 * crate::eval::ratio(e.triaged, e.category.total()),
        100.0 * detected as f64 / test.len().max(1) as f64
    )
    .map_err(io)?;
    Ok(met)
}

#[derive(Deserialize)]
struct ClassifyLine {
    #[serde(default)]
    id: serde_json::Value,
    #[serde(default)]
    text: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    lat: Option<f64>,
    #[serde(default)]
    lon: Option<f64>,
}

/// What `classify` prints for one line.
pub fn outcome_json(id: &serde_json::Value, o: &Outcome) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "category": o.category.as_str(),
        "urgency": o.urgency.as_str(),
        "whistle": o.whistle_level.as_str(),
        "county": o.jurisdiction.county,
        "street": o.jurisdiction.street,
        "community": o.jurisdiction.community,
        "language": o.language.as_str(),
        "confidence": (f64::from(o.confidence) * 1000.0).round() / 1000.0,
        "triage": o.triage,
        "why": o.matched,
        "runners_up": o.runners_up.iter().map(|a| serde_json::json!({"category": a.category.as_str(), "probability": (f64::from(a.probability) * 1000.0).round() / 1000.0})).collect::<Vec<_>>(),
    })
}

/// Classifies one input line the way the service classifies a request:
/// the request is validated as intake validates it, then read.
pub fn classify_line(engine: &Engine, line: &[u8]) -> std::result::Result<(serde_json::Value, Outcome), (serde_json::Value, String)> {
    let text = std::str::from_utf8(line).map_err(|e| (serde_json::Value::Null, format!("not UTF-8 text: {e}")))?;
    let l: ClassifyLine = serde_json::from_str(text)
        .map_err(|e| (serde_json::Value::Null, format!("not a JSON object with id, text, address, language: {e}")))?;
    let location = Location::parse(&l.address, l.lat, l.lon).map_err(|e| (l.id.clone(), e.to_string()))?;
    let request =
        Request::parse("external", "", &l.text, location, Contact::default(), &l.language).map_err(|e| (l.id.clone(), e.to_string()))?;
    let o = engine.read(&Input::of(&request, None));
    Ok((l.id, o))
}

/// Reads JSON lines, writes one result a line; returns how many lines were
/// refused (each refusal is a line `{"id", "error"}` saying why).
pub fn classify(engine: &Engine, input: impl BufRead, out: &mut impl Write, json: bool) -> Result<usize> {
    let io = |e: std::io::Error| Error::Io(e.to_string());
    // A reader that stops reading (`| head`) ends the output, not in an error.
    let written = |r: std::io::Result<()>| match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(io(e)),
    };
    let mut refused = 0;
    for (n, line) in input.split(b'\n').enumerate() {
        let line = line.map_err(io)?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match classify_line(engine, &line) {
            Ok((id, o)) => {
                if json {
                    if !written(writeln!(out, "{}", outcome_json(&id, &o)))? {
                        return Ok(refused);
                    }
                } else {
                    let place = [&o.jurisdiction.county, &o.jurisdiction.street].map(|p| p.as_deref().unwrap_or("?")).join("/");
                    let id = match &id {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let line = writeln!(
                        out,
                        "{id}\t{}\t{}\t{}\t{place}\t{}\t{:.2}{}",
                        o.category,
                        o.urgency,
                        o.whistle_level,
                        o.language.as_str(),
                        o.confidence,
                        if o.triage { "\ttriage" } else { "" }
                    );
                    if !written(line)? {
                        return Ok(refused);
                    }
                }
            }
            Err((id, reason)) => {
                refused += 1;
                let reason = format!("line {}: {reason}", n + 1);
                if !written(writeln!(out, "{}", serde_json::json!({"id": id, "error": reason})))? {
                    return Ok(refused);
                }
            }
        }
    }
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn shipped() -> Engine {
        let city = whistle_runtime::city::load(&repo().join("deploy/config/demo-city.toml")).unwrap();
        Engine::load(&repo().join("services/classifier/model/whistle.model"), &city, 0.5).unwrap()
    }

    /// A pipe whose reader went away after `left` lines (`| head`).
    struct Closed {
        left: usize,
        got: Vec<u8>,
    }

    impl Write for Closed {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.got.extend_from_slice(b);
            if b.contains(&b'\n') {
                self.left -= 1;
            }
            Ok(b.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_that_stops_reading_ends_the_output_quietly() {
        let engine = shipped();
        let input = "{\"id\": \"a\", \"text\": \"水管漏水\", \"language\": \"zh\"}\n".repeat(5);
        let mut out = Closed { left: 2, got: Vec::new() };
        assert_eq!(classify(&engine, input.as_bytes(), &mut out, true).unwrap(), 0, "no error, nothing refused");
        assert_eq!(String::from_utf8(out.got).unwrap().lines().count(), 2);
    }

    #[test]
    fn bad_input_gets_a_clear_result_or_a_clear_refusal() {
        let engine = shipped();
        let long = "漏".repeat(100_000);
        let mut input: Vec<u8> = Vec::new();
        for line in [
            r#"{"id": "empty", "text": "   ", "language": "zh"}"#.to_owned(),
            format!(r#"{{"id": "long", "text": "{long}", "language": "zh"}}"#),
            r#"{"id": "french", "text": "fuite d'eau", "language": "fr"}"#.to_owned(),
            r#"{"id": "garbage", "text": "\u0001\u0002 ☃☃☃ @@@ ### %%% 0x7f 0xff", "language": ""}"#.to_owned(),
            "{this is not json".to_owned(),
            r#"{"id": "trapped", "text": "엘리베이터에 갇혔어요 빨리 와주세요", "address": "차오양구 왕징", "language": ""}"#.to_owned(),
        ] {
            input.extend(line.as_bytes());
            input.push(b'\n');
        }
        input.extend(b"\xff\xfe\x00 binary \x80\x81\n");
        let mut out = Vec::new();
        let refused = classify(&engine, &input[..], &mut out, true).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 7, "one answer a line: {lines:#?}");
        assert_eq!(refused, 5);
        let error = |i: usize| lines[i]["error"].as_str().unwrap_or_default().to_owned();
        assert!(error(0).contains("text: must not be empty"), "{}", error(0));
        assert!(error(1).contains("100000 characters; the limit is 4000"), "{}", error(1));
        assert!(error(2).contains("unsupported language \"fr\""), "{}", error(2));
        assert!(error(4).starts_with("line 5: not a JSON object"), "{}", error(4));
        assert!(error(6).starts_with("line 7: not UTF-8 text"), "{}", error(6));
        // Garbage with no words is read, and left for a person.
        assert_eq!(lines[3]["id"], "garbage");
        assert_eq!(lines[3]["triage"], true, "{}", lines[3]);
        // Korean, its language told from the text, urgent by the danger signal.
        let t = &lines[5];
        assert_eq!(
            (t["language"].as_str(), t["urgency"].as_str(), t["street"].as_str()),
            (Some("ko"), Some("urgent"), Some("cy-wangjing")),
            "{t}"
        );
        assert!(t["why"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().starts_with("signal:trapped-in-lift")), "{t}");
    }

    #[test]
    fn the_shipped_model_is_what_train_builds_from_the_corpus() {
        let out = std::env::temp_dir().join(format!("whistle-model-{}.model", std::process::id()));
        let args = TrainArgs {
            corpus: repo().join(CORPUS_DIR),
            city: repo().join("deploy/config/demo-city.toml"),
            out: out.clone(),
            compare: false,
            corrections: Vec::new(),
            triage_below: 0.5,
            urgent_recall: TrainSpec::default().urgent_recall,
        };
        let mut report = Vec::new();
        train(&args, &mut report).unwrap();
        let fresh = std::fs::read(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        let shipped = std::fs::read(repo().join("services/classifier/model/whistle.model")).unwrap();
        assert!(
            fresh == shipped,
            "services/classifier/model/whistle.model is not what the corpus and the city's rules train: run `make model` and commit it"
        );
        let report = String::from_utf8(report).unwrap();
        assert!(report.contains("test split (held out") && report.contains("confusion"), "{report}");
    }
}
