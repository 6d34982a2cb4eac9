//! Keyword rules: which category, urgency, whistle level and jurisdiction a
//! request's text and address point to. Pure functions over the city config.

use whistle_domain::city::City;
use whistle_domain::{Category, Jurisdiction, Urgency, WhistleLevel};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub category: Category,
    pub urgency: Urgency,
    pub whistle_level: WhistleLevel,
    pub jurisdiction: Jurisdiction,
    /// Why: `kind:value:keyword` for each rule that matched.
    pub matched: Vec<String>,
}

/// Compiled rules: keywords lowercased once.
#[derive(Debug, Clone)]
pub struct Rules {
    categories: Vec<(Category, Vec<String>)>,
    urgency: Vec<(Urgency, Vec<String>)>,
    whistle: Vec<(WhistleLevel, Vec<String>)>,
    streets: Vec<(String, String, Vec<String>)>,
    counties: Vec<(String, Vec<String>)>,
}

fn lower(v: &[String]) -> Vec<String> {
    v.iter().map(|k| k.to_lowercase()).filter(|k| !k.is_empty()).collect()
}

fn hits<'a>(haystack: &str, keywords: &'a [String]) -> Vec<&'a str> {
    keywords.iter().filter(|k| haystack.contains(k.as_str())).map(String::as_str).collect()
}

impl Rules {
    pub fn new(city: &City) -> Self {
        let c = &city.config;
        // Urgency is checked urgent first, then important, then consultation.
        let order = [Urgency::Urgent, Urgency::Important, Urgency::Consultation, Urgency::Ordinary];
        let urgency = order.iter().filter_map(|u| c.classification.urgency.get(u).map(|k| (*u, lower(k)))).collect();
        let worder = [WhistleLevel::Difficult, WhistleLevel::Key, WhistleLevel::Ordinary];
        let whistle = worder.iter().filter_map(|w| c.classification.whistle_level.get(w).map(|k| (*w, lower(k)))).collect();
        Rules {
            categories: c.classification.categories.iter().map(|r| (r.category, lower(&r.keywords))).collect(),
            urgency,
            whistle,
            streets: c.streets.iter().map(|s| (s.code.clone(), s.county.clone(), lower(&s.keywords))).collect(),
            counties: c.counties.iter().map(|k| (k.code.clone(), lower(&k.keywords))).collect(),
        }
    }

    pub fn classify(&self, text: &str, address: &str) -> Outcome {
        let text = text.to_lowercase();
        let address = address.to_lowercase();
        let both = format!("{address}\n{text}");
        let mut matched = Vec::new();

        let mut best: Option<(Category, usize)> = None;
        for (cat, kws) in &self.categories {
            let h = hits(&text, kws);
            if !h.is_empty() && best.is_none_or(|(_, n)| h.len() > n) {
                best = Some((*cat, h.len()));
            }
        }
        let category = best.map_or(Category::Other, |(c, _)| c);
        if let Some((cat, kws)) = self.categories.iter().find(|(c, _)| *c == category) {
            matched.extend(hits(&text, kws).into_iter().map(|k| format!("category:{cat}:{k}")));
        }

        let mut urgency = None;
        for (u, kws) in &self.urgency {
            if let Some(k) = hits(&text, kws).first() {
                matched.push(format!("urgency:{u}:{k}"));
                urgency = Some(*u);
                break;
            }
        }
        let urgency = match (urgency, category) {
            (Some(u), _) => u,
            (None, Category::Consultation) => Urgency::Consultation,
            (None, _) => Urgency::Ordinary,
        };

        let mut whistle_level = WhistleLevel::Ordinary;
        for (w, kws) in &self.whistle {
            if let Some(k) = hits(&text, kws).first() {
                matched.push(format!("whistle_level:{w}:{k}"));
                whistle_level = *w;
                break;
            }
        }

        // The address decides first; the text only if the address says nothing.
        let mut jurisdiction = Jurisdiction::default();
        'places: for hay in [&address, &both] {
            for (street, county, kws) in &self.streets {
                if let Some(k) = hits(hay, kws).first() {
                    matched.push(format!("street:{street}:{k}"));
                    jurisdiction = Jurisdiction { county: Some(county.clone()), street: Some(street.clone()) };
                    break 'places;
                }
            }
            for (county, kws) in &self.counties {
                if let Some(k) = hits(hay, kws).first() {
                    matched.push(format!("county:{county}:{k}"));
                    jurisdiction = Jurisdiction { county: Some(county.clone()), street: None };
                    break 'places;
                }
            }
        }
        Outcome { category, urgency, whistle_level, jurisdiction, matched }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn rules() -> Rules {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/demo-city.toml");
        Rules::new(&whistle_runtime::city::load(&path).unwrap())
    }

    #[test]
    fn water_leak_in_jingshan() {
        let o = rules().classify("楼上漏水，水管爆管了", "东城区景山街道某小区3号楼");
        assert_eq!(o.category, Category::Water);
        assert_eq!(o.urgency, Urgency::Urgent, "{:?}", o.matched);
        assert_eq!(o.jurisdiction.street.as_deref(), Some("dc-jingshan"));
        assert_eq!(o.jurisdiction.county.as_deref(), Some("dongcheng"));
        assert!(o.matched.iter().any(|m| m == "category:water:漏水"), "{:?}", o.matched);
    }

    #[test]
    fn english_noise_complaint_and_county_only() {
        let o = rules().classify("Loud construction noise every night, reported many times", "Haidian");
        assert_eq!(o.category, Category::Noise);
        assert_eq!(o.urgency, Urgency::Ordinary);
        assert_eq!(o.whistle_level, WhistleLevel::Key);
        assert_eq!(o.jurisdiction, Jurisdiction { county: Some("haidian".into()), street: None });
    }

    #[test]
    fn consultation_and_unknown() {
        let o = rules().classify("请问怎么办理居住证", "");
        assert_eq!((o.category, o.urgency), (Category::Consultation, Urgency::Consultation));
        let o = rules().classify("something odd happened", "nowhere");
        assert_eq!((o.category, o.urgency), (Category::Other, Urgency::Ordinary));
        assert_eq!(o.jurisdiction, Jurisdiction::default());
    }
}
