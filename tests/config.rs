//! Every service's config at start, as an operator meets it: the shipped
//! file loads for each, `--print-config` hides the secrets, and a typo, an
//! unknown section, a bad offset or a shipped secret outside the local
//! profile refuses to start with a message naming the key.

use std::path::{Path, PathBuf};

use whistle_runtime::config::load_service;
use whistle_tests::repo_root;

fn shipped() -> String {
    std::fs::read_to_string(repo_root().join("deploy/local/whistle.toml")).unwrap()
}

/// The shipped file with `edit` applied, written where the services can read it.
fn file_with(name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let path = std::env::temp_dir().join(format!("whistle-config-{name}-{}.toml", std::process::id()));
    std::fs::write(&path, edit(shipped())).unwrap();
    path
}

/// What each service says of a config file at start: fine, or the error.
fn every_service(file: &Path) -> Vec<(&'static str, Result<(), String>)> {
    let f = Some(file);
    fn e<T>(r: whistle_runtime::Result<T>) -> Result<(), String> {
        r.map(|_| ()).map_err(|e| e.to_string())
    }
    vec![
        ("intake", e(load_service::<whistle_intake::Config>(f))),
        ("classifier", e(load_service::<whistle_classifier::Config>(f))),
        ("dispatcher", e(load_service::<whistle_dispatcher::Config>(f))),
        ("sla-timer", e(load_service::<whistle_sla_timer::Config>(f))),
        ("notifier", e(load_service::<whistle_notifier::Config>(f))),
        ("revisit", e(load_service::<whistle_revisit::Config>(f))),
        ("console", e(load_service::<whistle_console::Config>(f))),
    ]
}

#[test]
fn the_shipped_file_starts_every_service_and_prints_without_its_secrets() {
    let file = repo_root().join("deploy/local/whistle.toml");
    for (service, r) in every_service(&file) {
        assert_eq!(r, Ok(()), "{service}");
    }
    let config: whistle_revisit::Config = whistle_runtime::config::load_service(Some(&file)).unwrap();
    let printed = whistle_runtime::config::print(&config).unwrap();
    assert!(printed.contains("[revisit]") && printed.contains("[city]"), "{printed}");
    assert!(!printed.contains(config.revisit.link_secret.expose().as_str()), "the link secret in clear:\n{printed}");
    assert!(printed.contains(r#"link_secret = "<redacted>""#), "{printed}");
    // The printed config is a config: it loads back (secrets aside).
    let back: whistle_revisit::Config = toml::from_str(&printed).unwrap();
    assert_eq!(back.revisit.listen, config.revisit.listen);
}

#[test]
fn a_typo_in_a_services_own_section_is_refused_by_that_service_naming_the_key() {
    let own = [
        ("intake", "[intake]\n", "listen_adress"),
        ("intake", "[open311]\n", "post_per_minute"),
        ("classifier", "[classifier]\n", "triage_bellow"),
        ("dispatcher", "[dispatcher]\n", "platfrom"),
        ("sla-timer", "[sla_timer]\n", "claim_tll_ms"),
        ("notifier", "[notifier]\n", "max_attempt"),
        ("revisit", "[revisit]\n", "claim_minute"),
        ("console", "[console]\n", "sesion_hours"),
    ];
    for (owner, section, typo) in own {
        let file = file_with(typo, |s| s.replace(section, &format!("{section}{typo} = 1\n")));
        for (service, r) in every_service(&file) {
            if service == owner {
                let e = r.unwrap_err();
                let key = format!("{}.{typo}: unknown key", section.trim_matches(['[', ']', '\n']));
                assert!(e.contains(&key), "{service}: {e}");
            } else {
                // Not theirs to check.
                assert_eq!(r, Ok(()), "{service} on a typo in {section}");
            }
        }
    }
}

#[test]
fn an_unknown_section_or_a_typo_in_a_shared_one_is_refused_by_every_service() {
    let section = file_with("section", |s| s + "\n[intkae]\nlisten = \"127.0.0.1:1\"\n");
    for (service, r) in every_service(&section) {
        let e = r.unwrap_err();
        assert!(e.contains("[intkae]: no Whistle service has this section"), "{service}: {e}");
    }
    let shared = file_with("shared", |s| s.replace("[kafka]\n", "[kafka]\nbroker = \"kafka:9092\"\n"));
    // Every service that reads Kafka (the console reads only the desks).
    for (service, r) in every_service(&shared).into_iter().filter(|(s, _)| *s != "console") {
        let e = r.unwrap_err();
        assert!(e.contains("kafka.broker: unknown key"), "{service}: {e}");
    }
}

#[tokio::test]
async fn a_bad_offset_or_a_shipped_secret_outside_the_local_profile_refuses_to_start() {
    let file = file_with("offset", |s| s.replace("utc_offset = \"+08:00\"", "utc_offset = \"8\""));
    // Every service that reads the city's time (the sla-timer works in instants).
    for (service, r) in every_service(&file).into_iter().filter(|(s, _)| *s != "sla-timer") {
        let e = r.unwrap_err();
        assert!(e.contains("city.utc_offset: \"8\" is not an offset like \"+08:00\""), "{service}: {e}");
    }
    let file = file_with("production", |s| s.replace("profile = \"local\"", "profile = \"production\""));
    let config: whistle_notifier::Config = whistle_runtime::config::load_service(Some(&file)).unwrap();
    let e = whistle_notifier::Notifier::build(config).await.err().expect("refused").to_string();
    assert!(e.contains("revisit.link_secret: this is the secret shipped with Whistle"), "{e}");
}

#[test]
fn the_charts_config_starts_every_service() {
    let values = std::fs::read_to_string(repo_root().join("helm/whistle/values.yaml")).unwrap();
    let block: String = values
        .lines()
        .skip_while(|l| *l != "config: |")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("  "))
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    assert!(block.contains("[city]"), "the chart's config block:\n{block}");
    let path = std::env::temp_dir().join(format!("whistle-config-chart-{}.toml", std::process::id()));
    std::fs::write(&path, block).unwrap();
    for (service, r) in every_service(&path) {
        assert_eq!(r, Ok(()), "{service}");
    }
}

#[test]
fn a_value_out_of_range_or_an_unreadable_city_file_is_refused_naming_the_key() {
    for (service, edit, key) in [
        ("sla-timer", ("[sla_timer]\n", "[sla_timer]\nshards = 0\n"), "sla_timer.shards: 0 is out of range"),
        ("classifier", ("triage_below = 0.5", "triage_below = 2.0"), "classifier.triage_below: 2.0 is out of range"),
        ("notifier", ("max_attempts = 8", "max_attempts = 0"), "notifier.max_attempts: 0 is out of range"),
        ("dispatcher", ("warning_share = 0.8", "warning_share = 1.5"), "policy.warning_share: 1.5 is out of range"),
    ] {
        let file = file_with(key.split(':').next().unwrap(), |s| s.replacen(edit.0, edit.1, 1));
        let (_, r) = every_service(&file).into_iter().find(|(s, _)| *s == service).unwrap();
        let e = r.unwrap_err();
        assert!(e.contains(key), "{service}: {e}");
    }
    let file = file_with("no-city", |s| s.replace("file = \"deploy/config/demo-city.toml\"", "file = \"/nonexistent/city.toml\""));
    let config: whistle_dispatcher::Config = load_service(Some(&file)).unwrap();
    let e = config.city.load().unwrap_err().to_string();
    assert!(e.contains("city.file: ") && e.contains("/nonexistent/city.toml"), "{e}");
}

#[test]
fn the_shipped_knowledge_base_loads_with_answers_in_five_languages_and_its_labeled_set_names_its_entries() {
    let kb = whistle_tests::city().knowledge().expect("deploy/config/knowledge.toml");
    assert!(kb.len() >= 200, "{} entries", kb.len());
    for e in kb.entries() {
        for lang in ["zh", "en", "ja", "ko", "ru"] {
            assert!(e.answers.get(lang).is_some_and(|a| !a.trim().is_empty()), "{}: no {lang} answer", e.id);
            assert!(e.questions.get(lang).is_some_and(|q| !q.is_empty()), "{}: no {lang} question", e.id);
        }
    }
    let labeled = whistle_classifier::answers::read_labeled(&repo_root().join("deploy/config/knowledge-eval.jsonl")).expect("labeled set");
    for l in &labeled {
        if let Some(id) = &l.expected {
            assert!(kb.get(id).is_some(), "the labeled question {:?} names no entry {id}", l.text);
        }
    }
    let halves: Vec<&str> = labeled.iter().map(|l| whistle_classifier::answers::split_of(&l.text)).collect();
    assert!(halves.contains(&"tune") && halves.contains(&"test"), "both halves are used");
    // A broken file is refused naming the key.
    let bad = whistle_runtime::config::CitySettings { knowledge: "no-such-file.toml".into(), ..whistle_tests::city() };
    assert!(bad.knowledge().unwrap_err().to_string().contains("city.knowledge"));
}
