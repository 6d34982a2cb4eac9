//! The fixed taxonomy (see `shared/domain.md`): categories, urgency, whistle
//! levels, tiers, and the platforms and units tickets are sent to.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{Error, Result};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $field:literal, { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            pub fn parse(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err(Error::invalid($field, format!(
                        "unknown {} {other:?}; expected one of {}", $field,
                        [$($s),+].join(", ")
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

string_enum!(
    /// What the request is about.
    Category, "category", {
        Consultation => "consultation", Water => "water", Power => "power", Gas => "gas",
        Heating => "heating", Property => "property", Housing => "housing",
        CityManagement => "city_management", Environment => "environment", Noise => "noise",
        Transport => "transport", Education => "education", Health => "health",
        SocialSecurity => "social_security", Employment => "employment", Market => "market",
        Business => "business", Rural => "rural", Other => "other",
    }
);

string_enum!(
    /// The four request types; each has its own deadline.
    Urgency, "urgency", {
        Urgent => "urgent", Important => "important", Ordinary => "ordinary", Consultation => "consultation",
    }
);

string_enum!(
    /// The three levels of "whistle source".
    WhistleLevel, "whistle_level", { Ordinary => "ordinary", Key => "key", Difficult => "difficult" }
);

string_enum!(
    /// The three tiers of command platforms.
    Tier, "tier", { City => "city", County => "county", Street => "street" }
);

/// Which command platform: the city's, a county's or a street's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PlatformId {
    City,
    County(String),
    Street(String),
}

impl PlatformId {
    /// `city`, `county:<code>` or `street:<code>`.
    pub fn parse(s: &str) -> Result<Self> {
        let code_ok = |c: &str| !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        match s.split_once(':') {
            None if s == "city" => Ok(PlatformId::City),
            Some(("county", c)) if code_ok(c) => Ok(PlatformId::County(c.to_owned())),
            Some(("street", c)) if code_ok(c) => Ok(PlatformId::Street(c.to_owned())),
            _ => Err(Error::invalid("platform", format!("{s:?} is not city, county:<code> or street:<code>"))),
        }
    }

    pub fn tier(&self) -> Tier {
        match self {
            PlatformId::City => Tier::City,
            PlatformId::County(_) => Tier::County,
            PlatformId::Street(_) => Tier::Street,
        }
    }
}

impl fmt::Display for PlatformId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformId::City => f.write_str("city"),
            PlatformId::County(c) => write!(f, "county:{c}"),
            PlatformId::Street(c) => write!(f, "street:{c}"),
        }
    }
}

impl TryFrom<String> for PlatformId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        PlatformId::parse(&s)
    }
}

impl From<PlatformId> for String {
    fn from(p: PlatformId) -> String {
        p.to_string()
    }
}

/// A responsible unit's code (department, utility, bureau, community).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UnitCode(String);

impl UnitCode {
    pub fn parse(s: &str) -> Result<Self> {
        if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            Ok(UnitCode(s.to_owned()))
        } else {
            Err(Error::invalid("unit", format!("{s:?} is not a unit code (letters, digits, - _ .)")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for UnitCode {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        UnitCode::parse(&s)
    }
}

impl From<UnitCode> for String {
    fn from(u: UnitCode) -> String {
        u.0
    }
}

/// The county, street and community a request falls in, as far as known:
/// `None` where it cannot be told (never a guess presented as fact).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Jurisdiction {
    pub county: Option<String>,
    pub street: Option<String>,
    #[serde(default)]
    pub community: Option<String>,
}

impl Jurisdiction {
    /// A jurisdiction known down to the street (and its county).
    pub fn street(county: &str, street: &str) -> Self {
        Jurisdiction { county: Some(county.to_owned()), street: Some(street.to_owned()), community: None }
    }

    /// A jurisdiction known only to the county.
    pub fn county(county: &str) -> Self {
        Jurisdiction { county: Some(county.to_owned()), street: None, community: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taxonomy_round_trips() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()).unwrap(), *c);
        }
        assert_eq!(Category::ALL.len(), 19);
        let e = Urgency::parse("whenever").unwrap_err();
        assert_eq!(e.field(), Some("urgency"));
        assert!(e.to_string().contains("urgent, important, ordinary, consultation"));
    }

    #[test]
    fn platforms_parse() {
        assert_eq!(PlatformId::parse("city").unwrap(), PlatformId::City);
        assert_eq!(PlatformId::parse("county:east").unwrap().tier(), Tier::County);
        assert_eq!(PlatformId::parse("street:east-1").unwrap().to_string(), "street:east-1");
        assert!(PlatformId::parse("street:").is_err());
        assert!(PlatformId::parse("town:x").is_err());
    }
}
