//! Message texts in the five languages of the service, as Fluent catalogs
//! (`i18n/<lang>.ftl`). Chinese is the reference: every message must exist
//! there; a message missing in another language falls back to Chinese, and
//! the gap is logged once per (language, message).

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use whistle_domain::Language;

use crate::{Error, Result};

const BUILTIN: [(Language, &str); 5] = [
    (Language::Zh, include_str!("../i18n/zh.ftl")),
    (Language::En, include_str!("../i18n/en.ftl")),
    (Language::Ja, include_str!("../i18n/ja.ftl")),
    (Language::Ko, include_str!("../i18n/ko.ftl")),
    (Language::Ru, include_str!("../i18n/ru.ftl")),
];

pub struct Catalog {
    bundles: HashMap<Language, FluentBundle<FluentResource>>,
    warned: Mutex<HashSet<(Language, String)>>,
}

impl Catalog {
    /// The catalogs shipped with the notifier.
    pub fn builtin() -> Result<Self> {
        Self::from_sources(&BUILTIN)
    }

    /// Catalogs from Fluent sources; `required` message ids must all be in Chinese.
    pub fn from_sources(sources: &[(Language, &str)]) -> Result<Self> {
        let mut bundles = HashMap::new();
        for (lang, src) in sources {
            let res = FluentResource::try_new((*src).to_owned()).map_err(|(_, errs)| {
                Error::Catalog(format!("{}.ftl: {}", lang.as_str(), errs.first().map(|e| e.to_string()).unwrap_or_default()))
            })?;
            let id: unic_langid::LanguageIdentifier =
                lang.as_str().parse().map_err(|e| Error::Catalog(format!("{}: {e}", lang.as_str())))?;
            let mut bundle = FluentBundle::new_concurrent(vec![id]);
            // Plain text for SMS: no Unicode isolation marks around arguments.
            bundle.set_use_isolating(false);
            bundle.add_resource(res).map_err(|errs| Error::Catalog(format!("{}.ftl: {errs:?}", lang.as_str())))?;
            bundles.insert(*lang, bundle);
        }
        if !bundles.contains_key(&Language::Zh) {
            return Err(Error::Catalog("the Chinese catalog (zh.ftl) is required: it is the fallback".into()));
        }
        Ok(Catalog { bundles, warned: Mutex::default() })
    }

    /// Checks that Chinese has every message the notifier sends.
    pub fn require(&self, ids: &[&str]) -> Result<()> {
        let zh = &self.bundles[&Language::Zh];
        for id in ids {
            if zh.get_message(id).and_then(|m| m.value()).is_none() {
                return Err(Error::Catalog(format!("zh.ftl has no message {id:?}")));
            }
        }
        Ok(())
    }

    /// The text of message `id` in `lang` (or Chinese), and the language used.
    pub fn render(&self, lang: Language, id: &str, args: &[(&str, String)]) -> (Language, String) {
        let mut fargs = FluentArgs::new();
        for (k, v) in args {
            fargs.set(*k, v.clone());
        }
        for candidate in [lang, Language::Zh] {
            let bundle = self.bundles.get(&candidate);
            if let Some((bundle, pattern)) = bundle.and_then(|b| b.get_message(id).and_then(|m| m.value()).map(|p| (b, p))) {
                let mut errors = Vec::new();
                let text = bundle.format_pattern(pattern, Some(&fargs), &mut errors).into_owned();
                if !errors.is_empty() {
                    tracing::warn!(message = id, language = candidate.as_str(), errors = ?errors, "template has errors");
                }
                return (candidate, text);
            }
            if candidate != Language::Zh && self.warned.lock().expect("lock").insert((candidate, id.to_owned())) {
                tracing::warn!(message = id, language = candidate.as_str(), "no translation; falling back to Chinese (logged once)");
            }
        }
        // `require` at start-up rules this out for the messages the notifier sends.
        (Language::Zh, id.to_owned())
    }

    /// How many (language, message) gaps were logged.
    pub fn missing_logged(&self) -> usize {
        self.warned.lock().expect("lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_message_of_chinese() {
        let c = Catalog::builtin().unwrap();
        let zh = BUILTIN[0].1;
        let ids: Vec<&str> =
            zh.lines().filter(|l| !l.starts_with('#') && l.contains(" = ")).map(|l| l.split(" = ").next().unwrap()).collect();
        assert!(ids.len() >= 11);
        for lang in Language::ALL {
            for id in &ids {
                let (used, text) = c.render(lang, id, &[("number", "20261123000001".into())]);
                assert_eq!(used, lang, "{id} in {}", lang.as_str());
                assert!(!text.is_empty());
            }
        }
        assert_eq!(c.missing_logged(), 0);
    }

    #[test]
    fn a_missing_translation_falls_back_to_chinese_and_is_logged_once() {
        let c = Catalog::from_sources(&[(Language::Zh, "hello = 你好 { $name }\nbye = 再见"), (Language::En, "bye = Bye")]).unwrap();
        assert_eq!(c.render(Language::En, "bye", &[]), (Language::En, "Bye".into()));
        assert_eq!(c.render(Language::En, "hello", &[("name", "Li".into())]), (Language::Zh, "你好 Li".into()));
        c.render(Language::En, "hello", &[("name", "Li".into())]);
        assert_eq!(c.missing_logged(), 1, "logged once");
        c.render(Language::Ru, "hello", &[("name", "Li".into())]);
        assert_eq!(c.missing_logged(), 2, "Russian has no catalog at all here");
        assert!(c.require(&["hello", "bye"]).is_ok());
        assert!(c.require(&["nope"]).is_err());
    }
}
