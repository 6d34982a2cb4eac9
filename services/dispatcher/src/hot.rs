//! The hot issues of a period for a desk: the tickets received in it that
//! the caller may read, grouped by `whistle_domain::hot`.

use tonic::Status;
use whistle_domain::access::{Caller, DeskAction, authorize};
use whistle_domain::hot::hot_issues;
use whistle_domain::{Category, Ticket};
use whistle_proto::v1 as pb;
use whistle_runtime::TicketStore;

use crate::routing::Router;

/// The most tickets one answer looks at in a period (the newest).
const MAX_SCAN: usize = 20_000;

fn instant(field: &str, s: &str, offset: time::UtcOffset) -> Result<time::OffsetDateTime, Status> {
    let s = s.trim();
    let day = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .or_else(|_| time::Date::parse(s, day).map(|d| d.midnight().assume_offset(offset)))
        .map_err(|_| Status::invalid_argument(format!("{field}: {s:?} is not a date (2026-11-01) or an RFC 3339 time")))
}

async fn readable(
    store: &TicketStore,
    router: &Router,
    caller: &Caller,
    from: time::OffsetDateTime,
    to: time::OffsetDateTime,
    categories: &[Category],
) -> Result<(Vec<Ticket>, bool), Status> {
    let ids = store
        .received_between(Some(from), Some(to - time::Duration::milliseconds(1)), categories, 0, MAX_SCAN + 1)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let truncated = ids.len() > MAX_SCAN;
    let mut out = Vec::new();
    for chunk in ids[..ids.len().min(MAX_SCAN)].chunks(500) {
        let got = store.get_many(chunk).await.map_err(|e| Status::unavailable(e.to_string()))?;
        let unit_platform = |u: &whistle_domain::UnitCode| router.city().unit(u).map(|u| u.platform.clone());
        out.extend(got.into_iter().map(|p| p.ticket).filter(|t| authorize(caller, DeskAction::Read, t, unit_platform).is_ok()));
    }
    Ok((out, truncated))
}

pub(crate) async fn answer(
    store: &TicketStore,
    router: &Router,
    caller: &Caller,
    r: pb::HotIssuesRequest,
) -> Result<pb::HotIssuesResponse, Status> {
    let offset = router.calendar().offset();
    let from = instant("from", &r.from, offset)?;
    let to = instant("to", &r.to, offset)?;
    if from >= to {
        return Err(Status::invalid_argument(format!("the period is empty: from {} is not before to {}", r.from, r.to)));
    }
    let one =
        (!r.category.is_empty()).then(|| Category::parse(&r.category)).transpose().map_err(|e| Status::invalid_argument(e.to_string()))?;
    let categories: Vec<Category> = one.into_iter().collect();
    let (now, truncated) = readable(store, router, caller, from, to, &categories).await?;
    let (before, _) = readable(store, router, caller, from - (to - from), from, &categories).await?;
    let keep = |t: &&Ticket| r.place.is_empty() || whistle_domain::hot::place_of(t) == r.place;
    let now_refs: Vec<&Ticket> = now.iter().filter(keep).collect();
    let before_refs: Vec<&Ticket> = before.iter().filter(keep).collect();
    let words = |c: Category| {
        router.city().config.classification.categories.iter().filter(|k| k.category == c).flat_map(|k| k.keywords.clone()).collect()
    };
    let limit = match r.limit {
        0 => 20,
        n => (n as usize).min(100),
    };
    let listed = if one.is_some() && !r.place.is_empty() { 200 } else { 20 };
    let issues = hot_issues(&now_refs, &before_refs, words, limit)
        .into_iter()
        .map(|h| pb::HotIssue {
            category: h.category.as_str().to_owned(),
            place: h.place,
            terms: h.terms,
            count: h.count as u32,
            previous: h.previous as u32,
            tickets: h.tickets.iter().take(listed).map(|i| whistle_proto::ticket_view(now_refs[*i])).collect(),
        })
        .collect();
    Ok(pb::HotIssuesResponse { issues, scanned: now.len() as u32, truncated })
}
