//! The console's words, Chinese first with English beside it, as Fluent
//! catalogs (`i18n/<lang>.ftl`). Both catalogs must hold the same messages
//! (a unit test checks); a message missing at run time shows as `⟦id⟧`, so
//! the page tests catch it.

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The HTML `lang` attribute.
    pub fn html(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }
}

pub const SOURCES: [(Lang, &str); 2] = [(Lang::Zh, include_str!("../i18n/zh.ftl")), (Lang::En, include_str!("../i18n/en.ftl"))];

pub struct Texts {
    zh: FluentBundle<FluentResource>,
    en: FluentBundle<FluentResource>,
}

fn bundle(lang: Lang, src: &str) -> Result<FluentBundle<FluentResource>, String> {
    let res = FluentResource::try_new(src.to_owned())
        .map_err(|(_, errs)| format!("{}.ftl: {}", lang.as_str(), errs.first().map(|e| e.to_string()).unwrap_or_default()))?;
    let id: unic_langid::LanguageIdentifier = lang.html().parse().map_err(|e| format!("{}: {e}", lang.as_str()))?;
    let mut b = FluentBundle::new_concurrent(vec![id]);
    b.set_use_isolating(false);
    b.add_resource(res).map_err(|errs| format!("{}.ftl: {errs:?}", lang.as_str()))?;
    Ok(b)
}

impl Texts {
    pub fn builtin() -> Result<Self, String> {
        Ok(Texts { zh: bundle(Lang::Zh, SOURCES[0].1)?, en: bundle(Lang::En, SOURCES[1].1)? })
    }

    fn of(&self, lang: Lang) -> &FluentBundle<FluentResource> {
        match lang {
            Lang::Zh => &self.zh,
            Lang::En => &self.en,
        }
    }

    /// Message `id` with arguments.
    pub fn args(&self, lang: Lang, id: &str, args: &[(&str, String)]) -> String {
        let b = self.of(lang);
        let Some(pattern) = b.get_message(id).and_then(|m| m.value()) else { return format!("⟦{id}⟧") };
        let mut fargs = FluentArgs::new();
        for (k, v) in args {
            fargs.set(*k, v.clone());
        }
        let mut errors = Vec::new();
        b.format_pattern(pattern, Some(&fargs), &mut errors).into_owned()
    }

    pub fn t(&self, lang: Lang, id: &str) -> String {
        self.args(lang, id, &[])
    }

    /// A word for a code (`category-water`, `group-overdue`), or the code
    /// itself when the catalog has none (a category a city added).
    pub fn code(&self, lang: Lang, family: &str, code: &str) -> String {
        let id = format!("{family}-{}", code.replace(['_', ':'], "-"));
        if self.of(lang).has_message(&id) { self.t(lang, &id) } else { code.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(src: &str) -> std::collections::BTreeSet<String> {
        src.lines().filter_map(|l| l.split_once(" =").map(|(k, _)| k.trim().to_owned())).filter(|k| !k.starts_with('#')).collect()
    }

    #[test]
    fn both_catalogs_parse_and_hold_the_same_messages() {
        let t = Texts::builtin().unwrap();
        assert_eq!(ids(SOURCES[0].1), ids(SOURCES[1].1), "zh.ftl and en.ftl differ");
        assert_eq!(t.t(Lang::Zh, "nav-queue"), "待办队列");
        assert_eq!(t.t(Lang::En, "nav-queue"), "Queue");
        assert_eq!(t.t(Lang::En, "no-such-message"), "⟦no-such-message⟧");
        assert_eq!(t.code(Lang::Zh, "category", "noise"), "噪声扰民");
        assert_eq!(t.code(Lang::En, "category", "made-up"), "made-up");
        for c in whistle_domain::Category::ALL {
            assert_ne!(t.code(Lang::Zh, "category", c.as_str()), c.as_str(), "category {c} has a Chinese name");
        }
        for g in whistle_domain::queue::QueueGroup::ALL {
            assert_ne!(t.code(Lang::En, "group", g.as_str()), g.as_str(), "group {} has a word", g.as_str());
        }
    }
}
