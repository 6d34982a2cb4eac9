//! The free text a person writes into the trail: a unit's result, a desk's
//! reason, a note, a revisit answer. One limit and one rule for it: a person
//! at a desk or on the revisit queue is refused a text that is empty (where
//! one is required) or too long, and can shorten it; a citizen answering by
//! SMS cannot be asked again, so their text is cut to the limit instead.

use crate::{Error, Result};

/// A trimmed text of at most [`ReasonText::MAX_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonText(String);

impl ReasonText {
    /// Longest result, reason or note, in characters.
    pub const MAX_CHARS: usize = 2000;

    /// The reason an unsatisfied citizen gave none for.
    pub const CITIZEN_UNSATISFIED: &'static str = "市民回复不满意";

    /// A required text: refused when empty or too long, naming `field`.
    pub fn parse(field: &'static str, s: &str) -> Result<ReasonText> {
        let t = ReasonText::optional(field, s)?;
        if t.0.is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        Ok(t)
    }

    /// An optional text: may be empty, refused when too long.
    pub fn optional(field: &'static str, s: &str) -> Result<ReasonText> {
        let s = s.trim();
        let chars = s.chars().count();
        if chars > ReasonText::MAX_CHARS {
            return Err(Error::invalid(field, format!("has {chars} characters; the limit is {}", ReasonText::MAX_CHARS)));
        }
        Ok(ReasonText(s.to_owned()))
    }

    /// What a citizen answered (an SMS or the link's form): cut to the
    /// limit, never refused.
    pub fn from_citizen(s: &str) -> ReasonText {
        ReasonText(s.trim().chars().take(ReasonText::MAX_CHARS).collect())
    }

    /// An unsatisfied citizen's answer: cut to the limit, and the default
    /// reason when they gave none.
    pub fn citizen_unsatisfied(s: &str) -> ReasonText {
        let said = ReasonText::from_citizen(s);
        if said.is_empty() { ReasonText(ReasonText::CITIZEN_UNSATISFIED.to_owned()) } else { said }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<ReasonText> for String {
    fn from(t: ReasonText) -> String {
        t.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_desk_text_is_trimmed_and_refused_when_empty_or_too_long() {
        assert_eq!(ReasonText::parse("reason", "  漏水未修好 ").unwrap().as_str(), "漏水未修好");
        let empty = ReasonText::parse("reason", " \n ").unwrap_err();
        assert_eq!((empty.field(), empty.to_string().as_str()), (Some("reason"), "reason: must not be empty"));
        assert!(ReasonText::optional("note", "").unwrap().is_empty());
        let long = "水".repeat(ReasonText::MAX_CHARS + 1);
        let e = ReasonText::optional("note", &long).unwrap_err();
        assert_eq!(e.to_string(), "note: has 2001 characters; the limit is 2000");
        assert!(ReasonText::parse("result", &"水".repeat(ReasonText::MAX_CHARS)).is_ok());
    }

    #[test]
    fn a_citizen_text_is_cut_not_refused() {
        let long = "水".repeat(ReasonText::MAX_CHARS + 50);
        assert_eq!(ReasonText::from_citizen(&long).as_str().chars().count(), ReasonText::MAX_CHARS);
        assert!(ReasonText::from_citizen("  ").is_empty());
        assert_eq!(ReasonText::citizen_unsatisfied(" ").as_str(), ReasonText::CITIZEN_UNSATISFIED);
        assert_eq!(ReasonText::citizen_unsatisfied("还在漏").as_str(), "还在漏");
    }
}
