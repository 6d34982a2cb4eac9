//! A city's configuration as data: its counties and streets (with the address
//! keywords that place a request in them), its responsible units and the
//! platform each belongs to, the classification keywords and the routing
//! table. Loaded from a file by the services; validated here.

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::{Category, Error, PlatformId, Result, UnitCode, WhistleLevel};

/// An outline on the map: one ring of `[longitude, latitude]` points, as
/// GeoJSON writes a polygon's outer ring (closed or not).
pub type Outline = Vec<[f64; 2]>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct County {
    pub code: String,
    pub name: String,
    /// Every name a citizen may use for it: official and short names,
    /// traditional characters, pinyin and English, Japanese, Korean and
    /// Russian renderings (the gazetteer).
    #[serde(default, alias = "keywords")]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub outline: Option<Outline>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Street {
    pub code: String,
    pub county: String,
    pub name: String,
    #[serde(default, alias = "keywords")]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub outline: Option<Outline>,
}

/// A community (社区 or village) below a street.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Community {
    pub code: String,
    pub street: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub outline: Option<Outline>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub code: UnitCode,
    pub name: String,
    pub platform: PlatformId,
    /// Where this unit's notifications go, if not the default webhook.
    #[serde(default)]
    pub webhook: Option<String>,
    /// The unit's mailbox for notifications (besides the webhook).
    #[serde(default)]
    pub email: Option<String>,
    /// The head of the unit: receives the monthly summary by SMS.
    #[serde(default)]
    pub head: Option<Person>,
}

/// A named official and how to reach them (never logged).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// zh unless set.
    #[serde(default)]
    pub language: Option<String>,
}

/// The leader in charge of a platform: receives urging letters and the
/// supervised items of that platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leader {
    pub code: String,
    pub name: String,
    pub platform: PlatformId,
    #[serde(default)]
    pub webhook: Option<String>,
    /// Urging letters and supervised items also go here by SMS.
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryRule {
    pub category: Category,
    pub keywords: Vec<String>,
}

/// What a signal does to a request whose text shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalEffect {
    /// Urgent, whatever the model says (danger to life or property).
    Urgent,
    /// Important at least (serious or widespread, no danger now).
    Important,
    /// A key whistle at least (reported again, many affected).
    Key,
    /// A difficult whistle (dragged on, passed around, several departments).
    Difficult,
}

/// A rule read from the text: it fires when any word of `any` appears, or
/// when every group of `all` has a word in the text; with a `season`, only
/// in that season (the month the text names, else the month it arrived,
/// else the season's words in the text), and only where the word is not
/// part of one of its `unless` phrases. Words match case-insensitively,
/// in simplified or traditional characters; a Latin or Cyrillic word
/// matches whole words, or as a stem when it ends in `*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    pub name: String,
    pub effect: SignalEffect,
    #[serde(default)]
    pub any: Vec<String>,
    #[serde(default)]
    pub all: Vec<Vec<String>>,
    #[serde(default)]
    pub season: Option<String>,
    /// Phrases that contain a word of the signal but mean something else
    /// ("打不着火" holds "着火"; "漏电保护器" holds "漏电"): a word found
    /// inside one of them does not count.
    #[serde(default)]
    pub unless: Vec<String>,
}

/// A time of year a signal may depend on (the heating season): from one
/// day of the year to another (`"11-15"` to `"03-15"`, across the new year).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Season {
    pub from: String,
    pub until: String,
    /// Words that place a text in the season when it names no date.
    #[serde(default)]
    pub words: Vec<String>,
}

impl Season {
    /// `"MM-DD"` as (month, day).
    pub fn day_of_year(s: &str) -> Option<(u8, u8)> {
        let (m, d) = s.split_once('-')?;
        let (m, d): (u8, u8) = (m.parse().ok()?, d.parse().ok()?);
        ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((m, d))
    }

    /// Whether (month, day) falls in the season, both ends included.
    pub fn contains(&self, month: u8, day: u8) -> bool {
        let (Some(from), Some(until)) = (Self::day_of_year(&self.from), Self::day_of_year(&self.until)) else { return false };
        let at = (month, day);
        if from <= until { from <= at && at <= until } else { at >= from || at <= until }
    }
}

/// Repeated reports raise the whistle level: the same category at the
/// same address (or community, when there is no address) within
/// `window_days`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatRule {
    pub window_days: u32,
    /// This many earlier reports make the next one a key whistle.
    pub key_after: u32,
    /// This many earlier reports make the next one a difficult whistle.
    #[serde(default)]
    pub difficult_after: Option<u32>,
}

impl Default for RepeatRule {
    fn default() -> Self {
        RepeatRule { window_days: 30, key_after: 2, difficult_after: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Classification {
    /// Words that point to a category, in the city's languages: features
    /// the classifier's model weighs (it learns how much each list counts),
    /// not decisions.
    pub categories: Vec<CategoryRule>,
    /// Danger and whistle signals: decisions the model cannot overrule.
    #[serde(default)]
    pub signals: Vec<Signal>,
    #[serde(default)]
    pub seasons: BTreeMap<String, Season>,
    #[serde(default)]
    pub repeat: RepeatRule,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Category -> unit that handles it at the city platform.
    #[serde(default)]
    pub city: BTreeMap<Category, UnitCode>,
    /// Unit for categories not in the table.
    pub default_unit: UnitCode,
    /// Which tier a ticket starts at; the first matching rule wins, the city
    /// when none matches or the jurisdiction is unknown at that tier.
    #[serde(default)]
    pub rules: Vec<TierRule>,
    /// At a county: category -> the suffix of the county's unit
    /// (`<county>-<suffix>`), and the suffix for other categories.
    #[serde(default)]
    pub county: BTreeMap<Category, String>,
    #[serde(default)]
    pub county_default: Option<String>,
    /// At a street: the same, `<street>-<suffix>`.
    #[serde(default)]
    pub street: BTreeMap<Category, String>,
    #[serde(default)]
    pub street_default: Option<String>,
}

/// "Small matters stay in the grid, big ones in the street, hard ones in the
/// district": where a ticket of this category or whistle level starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRule {
    #[serde(default)]
    pub category: Option<Category>,
    #[serde(default)]
    pub whistle_level: Option<WhistleLevel>,
    pub tier: crate::Tier,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CityConfig {
    pub name: String,
    #[serde(default)]
    pub counties: Vec<County>,
    #[serde(default)]
    pub streets: Vec<Street>,
    #[serde(default)]
    pub communities: Vec<Community>,
    #[serde(default)]
    pub units: Vec<Unit>,
    #[serde(default)]
    pub leaders: Vec<Leader>,
    pub classification: Classification,
    pub routing: Routing,
}

/// A validated city: every reference resolves.
#[derive(Debug, Clone)]
pub struct City {
    pub config: CityConfig,
    units: HashMap<UnitCode, usize>,
    counties: HashSet<String>,
    /// Street code -> its county's code.
    streets: HashMap<String, String>,
    /// Community code -> its street's code.
    communities: HashMap<String, String>,
}

fn validate_classification(c: &Classification) -> Result<()> {
    let invalid = |reason: String| Err(Error::invalid("classification", reason));
    for (name, season) in &c.seasons {
        if Season::day_of_year(&season.from).is_none() || Season::day_of_year(&season.until).is_none() {
            return invalid(format!("season {name:?}: from and until must be days of the year like \"11-15\""));
        }
    }
    let mut names = HashSet::new();
    for s in &c.signals {
        if !names.insert(s.name.as_str()) {
            return invalid(format!("signal {:?} is defined twice", s.name));
        }
        if s.any.iter().chain(s.all.iter().flatten()).any(|w| w.trim().is_empty()) {
            return invalid(format!("signal {:?} has an empty word", s.name));
        }
        if s.any.is_empty() && (s.all.is_empty() || s.all.iter().any(Vec::is_empty)) {
            return invalid(format!("signal {:?} needs words in `any`, or in every group of `all`", s.name));
        }
        if let Some(season) = &s.season
            && !c.seasons.contains_key(season)
        {
            return invalid(format!("signal {:?} names unknown season {season:?}", s.name));
        }
    }
    if c.repeat.window_days == 0 || c.repeat.key_after == 0 || c.repeat.difficult_after.is_some_and(|d| d <= c.repeat.key_after) {
        return invalid("repeat: window_days and key_after must be at least 1, difficult_after more than key_after".into());
    }
    Ok(())
}

impl City {
    pub fn new(config: CityConfig) -> Result<Self> {
        let mut counties = HashSet::new();
        for c in &config.counties {
            if !counties.insert(c.code.clone()) {
                return Err(Error::City {
                    entry: "counties",
                    code: c.code.clone(),
                    duplicate: true,
                    reason: format!("duplicate county code {:?}", c.code),
                });
            }
        }
        let mut streets = HashMap::new();
        for s in &config.streets {
            if streets.insert(s.code.clone(), s.county.clone()).is_some() {
                return Err(Error::City {
                    entry: "streets",
                    code: s.code.clone(),
                    duplicate: true,
                    reason: format!("duplicate street code {:?}", s.code),
                });
            }
            if !counties.contains(s.county.as_str()) {
                return Err(Error::City {
                    entry: "streets",
                    code: s.code.clone(),
                    duplicate: false,
                    reason: format!("street {:?} names unknown county {:?}", s.code, s.county),
                });
            }
        }
        let mut communities = HashMap::new();
        for c in &config.communities {
            if communities.insert(c.code.clone(), c.street.clone()).is_some() {
                return Err(Error::City {
                    entry: "communities",
                    code: c.code.clone(),
                    duplicate: true,
                    reason: format!("duplicate community code {:?}", c.code),
                });
            }
            if !streets.contains_key(&c.street) {
                return Err(Error::City {
                    entry: "communities",
                    code: c.code.clone(),
                    duplicate: false,
                    reason: format!("community {:?} names unknown street {:?}", c.code, c.street),
                });
            }
        }
        let outlines = config
            .counties
            .iter()
            .map(|c| ("counties", &c.code, &c.outline))
            .chain(config.streets.iter().map(|s| ("streets", &s.code, &s.outline)))
            .chain(config.communities.iter().map(|c| ("communities", &c.code, &c.outline)));
        for (entry, code, outline) in outlines {
            if let Some(ring) = outline {
                let bad = ring.iter().find(|[lon, lat]| !(-180.0..=180.0).contains(lon) || !(-90.0..=90.0).contains(lat));
                if ring.len() < 3 || bad.is_some() {
                    return Err(Error::City {
                        entry,
                        code: code.clone(),
                        duplicate: false,
                        reason: format!("the outline of {code:?} needs 3 or more [longitude, latitude] points within range"),
                    });
                }
            }
        }
        validate_classification(&config.classification)?;
        let mut city = City { config, units: HashMap::new(), counties, streets, communities };
        let mut units = HashMap::new();
        for (i, u) in city.config.units.iter().enumerate() {
            if units.insert(u.code.clone(), i).is_some() {
                return Err(Error::City {
                    entry: "units",
                    code: u.code.to_string(),
                    duplicate: true,
                    reason: format!("duplicate unit code {:?}", u.code.as_str()),
                });
            }
            if !city.has_platform(&u.platform) {
                return Err(Error::City {
                    entry: "units",
                    code: u.code.to_string(),
                    duplicate: false,
                    reason: format!("unit {:?} belongs to unknown platform {}", u.code.as_str(), u.platform),
                });
            }
        }
        for l in &city.config.leaders {
            if !city.has_platform(&l.platform) {
                return Err(Error::City {
                    entry: "leaders",
                    code: l.code.clone(),
                    duplicate: false,
                    reason: format!("leader {:?} is in charge of unknown platform {}", l.code, l.platform),
                });
            }
        }
        let routing = &city.config.routing;
        for (cat, unit) in routing.city.iter().map(|(c, u)| (c.as_str(), u)).chain([("default", &routing.default_unit)]) {
            if !units.contains_key(unit) {
                return Err(Error::invalid("routing", format!("{cat} routes to unknown unit {:?}", unit.as_str())));
            }
        }
        city.units = units;
        Ok(city)
    }

    /// Whether the city has this platform.
    pub fn has_platform(&self, p: &PlatformId) -> bool {
        match p {
            PlatformId::City => true,
            PlatformId::County(c) => self.counties.contains(c),
            PlatformId::Street(s) => self.streets.contains_key(s),
        }
    }

    pub fn unit(&self, code: &UnitCode) -> Option<&Unit> {
        self.units.get(code).map(|&i| &self.config.units[i])
    }

    /// The platform a classified ticket starts at.
    pub fn start_platform(&self, category: Category, whistle_level: WhistleLevel, jurisdiction: &crate::Jurisdiction) -> PlatformId {
        let rule = self
            .config
            .routing
            .rules
            .iter()
            .find(|r| r.category.is_none_or(|c| c == category) && r.whistle_level.is_none_or(|w| w == whistle_level));
        let street = jurisdiction.street.as_ref().map(|s| PlatformId::Street(s.clone()));
        let county = jurisdiction
            .county
            .clone()
            .or_else(|| jurisdiction.street.as_deref().and_then(|s| self.county_of(s)).map(str::to_owned))
            .map(PlatformId::County);
        match rule.map(|r| r.tier) {
            Some(crate::Tier::Street) => street.or(county).unwrap_or(PlatformId::City),
            Some(crate::Tier::County) => county.unwrap_or(PlatformId::City),
            Some(crate::Tier::City) | None => PlatformId::City,
        }
    }

    /// The unit a platform's table sends a category to.
    pub fn unit_for(&self, platform: &PlatformId, category: Category) -> Option<UnitCode> {
        let r = &self.config.routing;
        let code = match platform {
            PlatformId::City => return Some(r.city.get(&category).unwrap_or(&r.default_unit).clone()),
            PlatformId::County(c) => format!("{c}-{}", r.county.get(&category).or(r.county_default.as_ref())?),
            PlatformId::Street(s) => format!("{s}-{}", r.street.get(&category).or(r.street_default.as_ref())?),
        };
        UnitCode::parse(&code).ok().filter(|u| self.unit(u).is_some())
    }

    /// The platform one tier up: street -> its county -> the city.
    pub fn parent(&self, platform: &PlatformId) -> Option<PlatformId> {
        match platform {
            PlatformId::City => None,
            PlatformId::County(_) => Some(PlatformId::City),
            PlatformId::Street(s) => self.county_of(s).map(|c| PlatformId::County(c.to_owned())),
        }
    }

    /// The platforms one tier down: the city's counties, a county's streets.
    pub fn children(&self, platform: &PlatformId) -> Vec<PlatformId> {
        match platform {
            PlatformId::City => self.config.counties.iter().map(|c| PlatformId::County(c.code.clone())).collect(),
            PlatformId::County(c) => {
                self.config.streets.iter().filter(|s| &s.county == c).map(|s| PlatformId::Street(s.code.clone())).collect()
            }
            PlatformId::Street(_) => Vec::new(),
        }
    }

    /// The units a platform dispatches to, in the city file's order.
    pub fn units_of(&self, platform: &PlatformId) -> impl Iterator<Item = &Unit> {
        self.config.units.iter().filter(move |u| &u.platform == platform)
    }

    /// The leader in charge of a platform, if one is configured.
    pub fn leader_of(&self, platform: &PlatformId) -> Option<&Leader> {
        self.config.leaders.iter().find(|l| &l.platform == platform)
    }

    pub fn county_of(&self, street: &str) -> Option<&str> {
        self.streets.get(street).map(String::as_str)
    }

    /// A place's name as a citizen reads it (the first of its names, else
    /// its code's entry name), with the places above it: "西城区 新街口街道".
    pub fn place_name(&self, code: &str) -> Option<String> {
        let c = &self.config;
        let first = |aliases: &[String], name: &str| aliases.first().cloned().unwrap_or_else(|| name.to_owned());
        let county = |code: &str| c.counties.iter().find(|k| k.code == code).map(|k| first(&k.aliases, &k.name));
        let street = |code: &str| c.streets.iter().find(|s| s.code == code).map(|s| (first(&s.aliases, &s.name), s.county.clone()));
        if let Some(name) = county(code) {
            return Some(name);
        }
        if let Some((name, of)) = street(code) {
            return Some(format!("{} {name}", county(&of).unwrap_or_default()).trim().to_owned());
        }
        let m = c.communities.iter().find(|m| m.code == code)?;
        let (street_name, of) = street(&m.street)?;
        Some(format!("{} {street_name} {}", county(&of).unwrap_or_default(), m.name).trim().to_owned())
    }

    pub fn street_of(&self, community: &str) -> Option<&str> {
        self.communities.get(community).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(units: Vec<Unit>, default_unit: &str) -> CityConfig {
        CityConfig {
            name: "t".into(),
            counties: vec![County { code: "east".into(), name: "East".into(), aliases: vec![], outline: None }],
            streets: vec![Street { code: "e1".into(), county: "east".into(), name: "E1".into(), aliases: vec![], outline: None }],
            communities: vec![],
            units,
            leaders: vec![],
            classification: Classification { categories: vec![], signals: vec![], seasons: BTreeMap::new(), repeat: RepeatRule::default() },
            routing: Routing {
                city: BTreeMap::new(),
                default_unit: UnitCode::parse(default_unit).unwrap(),
                rules: vec![],
                county: BTreeMap::new(),
                county_default: None,
                street: BTreeMap::new(),
                street_default: None,
            },
        }
    }

    fn unit(code: &str, platform: &str) -> Unit {
        Unit {
            code: UnitCode::parse(code).unwrap(),
            name: code.into(),
            platform: PlatformId::parse(platform).unwrap(),
            webhook: None,
            email: None,
            head: None,
        }
    }

    #[test]
    fn references_must_resolve() {
        assert!(City::new(config(vec![unit("hub", "city")], "hub")).is_ok());
        let e = City::new(config(vec![unit("hub", "street:nowhere")], "hub")).unwrap_err();
        assert!(e.to_string().contains("unknown platform street:nowhere"), "{e}");
        let e = City::new(config(vec![unit("hub", "city")], "ghost")).unwrap_err();
        assert!(e.to_string().contains("unknown unit \"ghost\""), "{e}");
        let e = City::new(config(vec![unit("hub", "city"), unit("hub", "city")], "hub")).unwrap_err();
        assert!(e.to_string().contains("duplicate unit"), "{e}");
    }
}
