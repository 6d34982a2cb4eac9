//! Hot issues: the problems citizens report most in a period, as the
//! cities' special campaigns pick them: tickets grouped by category and
//! place (street, else district), counted, named by the key terms their
//! texts share (the city file's words for that category), and compared
//! with the period before.

use std::collections::{BTreeMap, HashMap};

use crate::{Category, Ticket};

/// One hot issue: a category at a place, what its texts say, how often.
#[derive(Debug, Clone, PartialEq)]
pub struct HotIssue {
    pub category: Category,
    /// A street's or a district's code; empty when the place is unknown.
    pub place: String,
    /// The city's words for the category that most of its texts use.
    pub terms: Vec<String>,
    pub count: usize,
    /// The same issue's count in the period before.
    pub previous: usize,
    /// Its tickets, newest first.
    pub tickets: Vec<usize>,
}

/// Where a ticket's problem is, for grouping: its street, else its district.
pub fn place_of(t: &Ticket) -> String {
    let Some(c) = &t.classification else { return String::new() };
    c.jurisdiction.street.clone().or_else(|| c.jurisdiction.county.clone()).unwrap_or_default()
}

fn key(t: &Ticket) -> Option<(Category, String)> {
    t.classification.as_ref().map(|c| (c.category, place_of(t)))
}

/// The `limit` most frequent issues among `now` (indexes into it are the
/// issues' tickets), with their counts among `before`; `words` gives the
/// city's words for a category (a trailing `*` is a stem).
pub fn hot_issues(now: &[&Ticket], before: &[&Ticket], words: impl Fn(Category) -> Vec<String>, limit: usize) -> Vec<HotIssue> {
    let mut groups: BTreeMap<(Category, String), Vec<usize>> = BTreeMap::new();
    for (i, t) in now.iter().enumerate() {
        if let Some(k) = key(t) {
            groups.entry(k).or_default().push(i);
        }
    }
    let mut previous: HashMap<(Category, String), usize> = HashMap::new();
    for t in before {
        if let Some(k) = key(t) {
            *previous.entry(k).or_default() += 1;
        }
    }
    let mut issues: Vec<HotIssue> = groups
        .into_iter()
        .map(|((category, place), mut tickets)| {
            tickets.sort_by(|a, b| now[*b].received_at.cmp(&now[*a].received_at));
            let texts: Vec<String> = tickets.iter().map(|i| now[*i].request.text.to_lowercase()).collect();
            let mut terms: Vec<(usize, String)> = words(category)
                .into_iter()
                .filter_map(|w| {
                    let stem = w.trim_end_matches('*').to_lowercase();
                    // Single letters and one-character words say nothing alone.
                    if stem.chars().count() < 2 {
                        return None;
                    }
                    let n = texts.iter().filter(|t| t.contains(&stem)).count();
                    (n > 0).then_some((n, w.trim_end_matches('*').to_owned()))
                })
                .collect();
            terms.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.chars().count().cmp(&a.1.chars().count())).then(a.1.cmp(&b.1)));
            // A shorter word inside a longer one already shown adds nothing.
            let mut picked: Vec<String> = Vec::new();
            for (_, w) in terms {
                if picked.len() == 3 {
                    break;
                }
                if !picked.iter().any(|p| p.contains(&w) || w.contains(p.as_str())) {
                    picked.push(w);
                }
            }
            let prev = previous.get(&(category, place.clone())).copied().unwrap_or(0);
            HotIssue { category, place, terms: picked, count: tickets.len(), previous: prev, tickets }
        })
        .collect();
    issues.sort_by(|a, b| {
        b.count.cmp(&a.count).then(a.previous.cmp(&b.previous)).then(a.category.cmp(&b.category)).then(a.place.cmp(&b.place))
    });
    issues.truncate(limit);
    issues
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, Event, EventKind};
    use crate::{Contact, EventId, Jurisdiction, Language, Location, Request, TicketId, TicketNumber, Urgency, WhistleLevel};
    use time::macros::datetime;

    fn ticket(n: u32, text: &str, category: Category, street: &str) -> Ticket {
        let request = Request::parse("phone", "", text, Location::default(), Contact::default(), "").unwrap();
        let id = TicketId::new();
        let at = datetime!(2026-11-23 10:00 UTC) + time::Duration::minutes(n as i64);
        let ev = |kind| Event { id: EventId::new(), ticket_id: id, occurred_at: at, actor: Actor::system("t"), kind };
        let number = TicketNumber::parse(&format!("20261123{n:06}")).unwrap();
        let mut t = Ticket::open(&ev(EventKind::Received { number, request })).unwrap();
        let j = Jurisdiction { county: Some("xicheng".into()), street: Some(street.into()), community: None };
        t.apply(&ev(EventKind::classified_surely(category, Urgency::Ordinary, WhistleLevel::Ordinary, j, Language::Zh))).unwrap();
        t
    }

    #[test]
    fn the_most_reported_problem_at_a_place_comes_first_with_its_shared_words_and_trend() {
        let now = [
            ticket(1, "工地夜间施工噪音，吵得睡不着", Category::Noise, "xc-xinjiekou"),
            ticket(2, "晚上施工噪音太大", Category::Noise, "xc-xinjiekou"),
            ticket(3, "夜间施工扰民", Category::Noise, "xc-xinjiekou"),
            ticket(4, "楼道水管漏水", Category::Water, "xc-xinjiekou"),
            ticket(5, "广场舞噪音", Category::Noise, "xc-jinrongjie"),
        ];
        let before = [ticket(6, "施工噪音", Category::Noise, "xc-xinjiekou")];
        let words = |c: Category| match c {
            Category::Noise => vec!["施工".to_owned(), "噪音".into(), "夜间施工".into(), "广场舞".into(), "吵".into()],
            _ => vec!["漏水".to_owned()],
        };
        let now_refs: Vec<&Ticket> = now.iter().collect();
        let before_refs: Vec<&Ticket> = before.iter().collect();
        let hot = hot_issues(&now_refs, &before_refs, words, 10);
        let top = &hot[0];
        assert_eq!((top.category, top.place.as_str(), top.count, top.previous), (Category::Noise, "xc-xinjiekou", 3, 1));
        assert_eq!(top.terms, ["施工", "噪音"], "施工 is in all three (and 夜间施工 inside it is left out), 噪音 in two");
        assert_eq!(top.tickets, [2, 1, 0], "newest first");
        assert_eq!(hot.len(), 3);
        assert_eq!(hot_issues(&now_refs, &before_refs, |_| Vec::new(), 1).len(), 1, "limited");
    }
}
