//! Loads a city's configuration file (see `deploy/config/demo-city.toml`).
//! Every mistake is a start-up error naming the file and line.

use std::path::Path;
use whistle_domain::city::{City, CityConfig};

use crate::{Error, Result};

pub fn load(path: &Path) -> Result<City> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("city file {}: {e}", path.display())))?;
    parse(&text).map_err(|e| Error::Config(format!("city file {}{e}", path.display())))
}

/// Parses and validates a city file; errors start with `:<line>: ` when the
/// line is known ([`load`] puts the file's path before them).
fn parse(text: &str) -> std::result::Result<City, String> {
    let config: CityConfig = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => format!(":{}: {}", line_of(text, span.start), e.message()),
        None => format!(": {e}"),
    })?;
    City::new(config).map_err(|e| match &e {
        whistle_domain::Error::City { code, duplicate, .. } => match code_line(text, code, *duplicate) {
            Some(line) => format!(":{line}: {e}"),
            None => format!(": {e}"),
        },
        whistle_domain::Error::Invalid { .. } | whistle_domain::Error::Transition { .. } => format!(": {e}"),
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// The line defining `code = "<code>"` (the second such line for a duplicate).
fn code_line(text: &str, code: &str, duplicate: bool) -> Option<usize> {
    let wanted = format!("code = \"{code}\"");
    let mut hits = text.lines().enumerate().filter(|(_, l)| l.trim() == wanted).map(|(i, _)| i + 1);
    if duplicate { hits.nth(1) } else { hits.next() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whistle_domain::{Category, Jurisdiction, PlatformId, WhistleLevel};

    const BASE: &str = r#"
name = "t"
[[counties]]
code = "east"
name = "East"
[[streets]]
code = "e1"
county = "east"
name = "E1"
[[units]]
code = "hub"
name = "Hub"
platform = "city"
[classification]
categories = []
[routing]
default_unit = "hub"
"#;

    #[test]
    fn the_shipped_demo_city_loads() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/demo-city.toml");
        let city = load(&file).unwrap();
        assert!(city.config.counties.len() >= 10 && city.config.streets.len() >= 60 && city.config.units.len() >= 300);
    }

    #[test]
    fn tickets_start_at_the_tier_their_rules_name() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/demo-city.toml");
        let city = load(&file).unwrap();
        let j = |county: Option<&str>, street: Option<&str>| Jurisdiction {
            county: county.map(Into::into),
            street: street.map(Into::into),
            community: None,
        };
        let noise = city.start_platform(Category::Noise, WhistleLevel::Ordinary, &j(Some("xicheng"), Some("xc-xinjiekou")));
        assert_eq!(noise, PlatformId::parse("street:xc-xinjiekou").unwrap());
        assert_eq!(
            city.start_platform(Category::Noise, WhistleLevel::Ordinary, &j(Some("xicheng"), None)),
            PlatformId::parse("county:xicheng").unwrap()
        );
        assert_eq!(city.start_platform(Category::Noise, WhistleLevel::Ordinary, &j(None, None)), PlatformId::City);
        assert_eq!(
            city.start_platform(Category::Water, WhistleLevel::Ordinary, &j(Some("xicheng"), Some("xc-xinjiekou"))),
            PlatformId::City
        );
        assert_eq!(
            city.start_platform(Category::Water, WhistleLevel::Difficult, &j(Some("xicheng"), None)),
            PlatformId::parse("county:xicheng").unwrap()
        );
        assert_eq!(city.unit_for(&noise, Category::Noise).unwrap().as_str(), "xc-xinjiekou-office");
        assert_eq!(city.unit_for(&PlatformId::parse("county:xicheng").unwrap(), Category::Noise).unwrap().as_str(), "xicheng-environment");
        assert_eq!(city.parent(&noise), Some(PlatformId::parse("county:xicheng").unwrap()));
    }

    #[test]
    fn mistakes_name_the_line() {
        assert!(parse(BASE).is_ok());
        let unknown_parent = BASE.replace("county = \"east\"", "county = \"west\"");
        assert_eq!(parse(&unknown_parent).unwrap_err(), r#":7: streets: street "e1" names unknown county "west""#);
        let duplicate = format!("{BASE}[[units]]\ncode = \"hub\"\nname = \"Again\"\nplatform = \"city\"\n");
        let e = parse(&duplicate).unwrap_err();
        assert!(e.starts_with(":19: units: duplicate unit code"), "{e}");
        let no_platform = BASE.replace("platform = \"city\"\n", "");
        let e = parse(&no_platform).unwrap_err();
        assert!(e.starts_with(":10:") && e.contains("missing field `platform`"), "{e}");
    }
}
