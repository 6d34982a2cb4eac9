//! Jurisdiction: the county, street and community a request falls in, from
//! its coordinates (inside an outline of the city file) or the names in its
//! address and text (the city file's aliases in every language). "Unknown"
//! whenever the evidence is missing or disagrees: never a guess presented
//! as fact.

use whistle_domain::city::{City, Outline};
use whistle_domain::{GeoPoint, Jurisdiction};

use crate::text::{WordList, is_cjk, normalize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    County,
    Street,
    Community,
}

#[derive(Debug, Clone)]
struct Place {
    level: Level,
    code: String,
    /// A short Chinese name (two characters) is also a common word (光明,
    /// 上地 in 上地铁): in running text it counts only before a place word.
    weak: bool,
}

/// Words that, right after a short name, make it a place.
const PLACE_WORDS: &[&str] = &[
    "区",
    "街道",
    "街",
    "大街",
    "路",
    "社区",
    "小区",
    "地区",
    "一带",
    "附近",
    "片区",
    "村",
    "镇",
    "乡",
    "门",
    "桥",
    "里",
    "园",
    "胡同",
    "地铁站",
    "站",
    "这边",
    "那边",
    "这儿",
    "那儿",
    "这里",
    "那里",
    "这块",
    "那块",
];

/// Words that, right before a short name, make it a place.
const PLACE_CUES: &[&str] = &["住在", "家在", "位于", "在", "到", "去", "来自", "北京"];

#[derive(Clone)]
pub struct Gazetteer {
    names: WordList<usize>,
    places: Vec<Place>,
    /// (level, code, outline), smallest areas first.
    outlines: Vec<(Level, String, Outline)>,
    county_of_street: std::collections::HashMap<String, String>,
    street_of_community: std::collections::HashMap<String, String>,
}

/// Where a request is, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub jurisdiction: Jurisdiction,
    /// `place:<how>:<level>:<code>` for each piece of evidence used.
    pub evidence: Vec<String>,
}

impl Gazetteer {
    pub fn new(city: &City) -> Self {
        let c = &city.config;
        let mut places = Vec::new();
        let mut words = Vec::new();
        let mut add = |level: Level, code: &str, names: Vec<String>| {
            for name in names {
                let n = normalize(&name);
                let weak = n.chars().count() <= 2 && n.chars().all(is_cjk);
                words.push((places.len(), name));
                places.push(Place { level, code: code.to_owned(), weak });
            }
        };
        for k in &c.counties {
            add(Level::County, &k.code, k.aliases.clone());
        }
        for s in &c.streets {
            add(Level::Street, &s.code, s.aliases.clone());
        }
        for m in &c.communities {
            add(Level::Community, &m.code, std::iter::once(m.name.clone()).chain(m.aliases.iter().cloned()).collect());
        }
        let mut outlines: Vec<(Level, String, Outline)> = Vec::new();
        outlines.extend(c.communities.iter().filter_map(|m| m.outline.clone().map(|o| (Level::Community, m.code.clone(), o))));
        outlines.extend(c.streets.iter().filter_map(|s| s.outline.clone().map(|o| (Level::Street, s.code.clone(), o))));
        outlines.extend(c.counties.iter().filter_map(|k| k.outline.clone().map(|o| (Level::County, k.code.clone(), o))));
        Gazetteer {
            names: WordList::new(words, true),
            places,
            outlines,
            county_of_street: c.streets.iter().map(|s| (s.code.clone(), s.county.clone())).collect(),
            street_of_community: c.communities.iter().map(|m| (m.code.clone(), m.street.clone())).collect(),
        }
    }

    /// The jurisdiction of a request from its address, text and point.
    pub fn place(&self, address: &str, text: &str, point: Option<&GeoPoint>) -> Placed {
        let by_point = point.and_then(|p| self.by_point(p));
        let address = normalize(address);
        let text = normalize(text);
        // The address field speaks first; the text only when it says nothing.
        let by_name = self.by_names(&address, false).or_else(|| self.by_names(&text, true));
        match (by_point, by_name) {
            (Some(p), Some(n)) if self.agree(&p.jurisdiction, &n.jurisdiction) => {
                // The point is measured; the names may add the community.
                let mut j = p.jurisdiction.clone();
                if j.community.is_none() && n.jurisdiction.street == j.street {
                    j.community = n.jurisdiction.community.clone();
                }
                Placed { jurisdiction: j, evidence: [p.evidence, n.evidence].concat() }
            }
            (Some(p), Some(n)) => {
                // Coordinates from a phone are measured, names are typed:
                // the point wins, and the trail says the names disagreed.
                let mut evidence = p.evidence;
                evidence.push(format!("place:names-disagree:{}", n.evidence.join(",")));
                Placed { jurisdiction: p.jurisdiction, evidence }
            }
            (Some(p), None) => p,
            (None, Some(n)) => n,
            (None, None) => Placed { jurisdiction: Jurisdiction::default(), evidence: Vec::new() },
        }
    }

    fn agree(&self, a: &Jurisdiction, b: &Jurisdiction) -> bool {
        let same = |x: &Option<String>, y: &Option<String>| x.is_none() || y.is_none() || x == y;
        same(&a.county, &b.county) && same(&a.street, &b.street)
    }

    fn by_point(&self, p: &GeoPoint) -> Option<Placed> {
        let (level, code, _) = self.outlines.iter().find(|(_, _, ring)| inside(ring, p.lon(), p.lat()))?;
        let j = self.complete(*level, code);
        Some(Placed { jurisdiction: j, evidence: vec![format!("place:point:{}:{code}", level_name(*level))] })
    }

    /// Fills the levels above a place.
    fn complete(&self, level: Level, code: &str) -> Jurisdiction {
        match level {
            Level::County => Jurisdiction { county: Some(code.to_owned()), street: None, community: None },
            Level::Street => {
                Jurisdiction { county: self.county_of_street.get(code).cloned(), street: Some(code.to_owned()), community: None }
            }
            Level::Community => {
                let street = self.street_of_community.get(code).cloned();
                let county = street.as_ref().and_then(|s| self.county_of_street.get(s).cloned());
                Jurisdiction { county, street, community: Some(code.to_owned()) }
            }
        }
    }

    fn by_names(&self, hay: &str, running_text: bool) -> Option<Placed> {
        let mut found: Vec<(Level, &str, &str)> = Vec::new();
        for hit in self.names.find(hay) {
            let place = &self.places[*hit.tag];
            if place.weak && running_text {
                let (before, after) = (&hay[..hit.start], &hay[hit.end..]);
                if !PLACE_WORDS.iter().any(|w| after.starts_with(w)) && !PLACE_CUES.iter().any(|w| before.ends_with(w)) {
                    continue;
                }
            }
            found.push((place.level, place.code.as_str(), hit.word));
        }
        if found.is_empty() {
            return None;
        }
        let evidence =
            |items: &[(Level, &str, &str)]| items.iter().map(|(l, c, w)| format!("place:name:{}:{c}:{w}", level_name(*l))).collect();
        let codes = |level: Level| {
            let mut v: Vec<&str> = found.iter().filter(|(l, _, _)| *l == level).map(|(_, c, _)| *c).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let counties = codes(Level::County);
        let streets = codes(Level::Street);
        let communities = codes(Level::Community);
        // One community, consistent with every street and county named.
        if let [m] = communities[..] {
            let j = self.complete(Level::Community, m);
            if streets.iter().all(|s| Some(*s) == j.street.as_deref()) && counties.iter().all(|k| Some(*k) == j.county.as_deref()) {
                return Some(Placed { jurisdiction: j, evidence: evidence(&found) });
            }
        }
        let county_of = |s: &str| self.county_of_street.get(s).map(String::as_str);
        let j = match (&counties[..], &streets[..]) {
            ([], []) => return None,
            ([], [s]) => self.complete(Level::Street, s),
            // Several streets and no county: their county, if they share one.
            ([], many) => {
                let mut of: Vec<&str> = many.iter().filter_map(|s| county_of(s)).collect();
                of.dedup();
                match of[..] {
                    [k] => self.complete(Level::County, k),
                    _ => return None,
                }
            }
            // A county named: its one street among those named, else the
            // county only (a street of another county is not trusted).
            ([k], named) => match named.iter().filter(|s| county_of(s) == Some(*k)).collect::<Vec<_>>()[..] {
                [s] => self.complete(Level::Street, s),
                _ => self.complete(Level::County, k),
            },
            // Counties that contradict each other: unknown.
            _ => return None,
        };
        Some(Placed { jurisdiction: j, evidence: evidence(&found) })
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::County => "county",
        Level::Street => "street",
        Level::Community => "community",
    }
}

/// Whether (x, y) lies inside the ring (even-odd rule).
pub fn inside(ring: &[[f64; 2]], x: f64, y: f64) -> bool {
    let mut inside = false;
    let n = ring.len();
    for i in 0..n {
        let [xi, yi] = ring[i];
        let [xj, yj] = ring[(i + n - 1) % n];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn city() -> City {
        let text = r#"
name = "t"
[[counties]]
code = "chaoyang"
name = "Chaoyang"
aliases = ["朝阳区", "朝阳", "Chaoyang", "차오양구", "Чаоян*"]
outline = [[116.40, 39.90], [116.60, 39.90], [116.60, 40.05], [116.40, 40.05]]
[[counties]]
code = "dongcheng"
name = "Dongcheng"
aliases = ["东城区", "东城"]
[[streets]]
code = "cy-wangjing"
county = "chaoyang"
name = "Wangjing"
aliases = ["望京", "Wangjing", "왕징", "Ванцзин*"]
outline = [[116.45, 39.98], [116.50, 39.98], [116.50, 40.02], [116.45, 40.02]]
[[streets]]
code = "dc-chaoyangmen"
county = "dongcheng"
name = "Chaoyangmen"
aliases = ["朝阳门"]
[[streets]]
code = "cy-guangming"
county = "chaoyang"
name = "Guangming"
aliases = ["光明"]
[[communities]]
code = "cy-wangjing-c1"
street = "cy-wangjing"
name = "花家地社区"
[[units]]
code = "hub"
name = "Hub"
platform = "city"
[classification]
categories = []
[routing]
default_unit = "hub"
"#;
        whistle_domain::city::City::new(toml::from_str(text).unwrap()).unwrap()
    }

    fn place(address: &str, text: &str) -> Jurisdiction {
        Gazetteer::new(&city()).place(address, text, None).jurisdiction
    }

    #[test]
    fn names_in_every_language_place_a_request() {
        assert_eq!(place("朝阳区望京街道", "").street.as_deref(), Some("cy-wangjing"));
        assert_eq!(place("", "我住在望京这边，楼下天天吵").street.as_deref(), Some("cy-wangjing"));
        assert_eq!(place("Wangjing, Chaoyang District", "").street.as_deref(), Some("cy-wangjing"));
        assert_eq!(place("왕징에 살아요", "").street.as_deref(), Some("cy-wangjing"));
        assert_eq!(place("", "Я живу в Ванцзине, район Чаоян").street.as_deref(), Some("cy-wangjing"));
        let j = place("花家地社区5号楼", "");
        assert_eq!(
            (j.county.as_deref(), j.street.as_deref(), j.community.as_deref()),
            (Some("chaoyang"), Some("cy-wangjing"), Some("cy-wangjing-c1"))
        );
        assert_eq!(place("東城區朝陽門", "").street.as_deref(), Some("dc-chaoyangmen"), "traditional characters, longest name wins");
    }

    #[test]
    fn unknown_rather_than_a_guess() {
        assert_eq!(place("", "今天心情不好"), Jurisdiction::default());
        assert_eq!(place("", "光明正大地说，这事得管"), Jurisdiction::default(), "a short name in running text needs a place word");
        assert_eq!(place("", "光明街道的路灯坏了").street.as_deref(), Some("cy-guangming"));
        let j = place("东城区望京", "");
        assert_eq!(
            j,
            Jurisdiction { county: Some("dongcheng".into()), street: None, community: None },
            "a street of another county is not trusted"
        );
    }

    #[test]
    fn the_point_decides_when_there_is_one() {
        let g = Gazetteer::new(&city());
        let p = GeoPoint::parse(40.0, 116.47).unwrap();
        assert_eq!(g.place("", "", Some(&p)).jurisdiction.street.as_deref(), Some("cy-wangjing"));
        let elsewhere = GeoPoint::parse(39.95, 116.55).unwrap();
        let j = g.place("", "", Some(&elsewhere)).jurisdiction;
        assert_eq!((j.county.as_deref(), j.street.as_deref()), (Some("chaoyang"), None));
        assert_eq!(g.place("", "", Some(&GeoPoint::parse(10.0, 10.0).unwrap())).jurisdiction, Jurisdiction::default());
    }
}
