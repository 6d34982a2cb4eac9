//! Which events become which messages, to whom, in which language (the
//! citizen's from the ticket; officials' Chinese unless their entry in the
//! city file says otherwise). The texts come from the Fluent catalogs.

use serde::Serialize;
use whistle_domain::{Category, Event, EventKind, Language, OverdueLevel, PlatformId, Ticket, TicketId};

use crate::i18n::Catalog;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    TicketReceived,
    TicketCompleted,
    RevisitQuestion,
    TicketAssigned,
    TicketReopened,
    OverdueReminder,
    UrgingLetter,
    LeaderUrging,
    LeaderSupervised,
    DeskCompleted,
    DeskReturned,
    MonthlySummary,
}

impl Template {
    pub const ALL: [Template; 12] = [
        Template::TicketReceived,
        Template::TicketCompleted,
        Template::RevisitQuestion,
        Template::TicketAssigned,
        Template::TicketReopened,
        Template::OverdueReminder,
        Template::UrgingLetter,
        Template::LeaderUrging,
        Template::LeaderSupervised,
        Template::DeskCompleted,
        Template::DeskReturned,
        Template::MonthlySummary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Template::TicketReceived => "ticket_received",
            Template::TicketCompleted => "ticket_completed",
            Template::RevisitQuestion => "revisit_question",
            Template::TicketAssigned => "ticket_assigned",
            Template::TicketReopened => "ticket_reopened",
            Template::OverdueReminder => "overdue_reminder",
            Template::UrgingLetter => "urging_letter",
            Template::LeaderUrging => "leader_urging",
            Template::LeaderSupervised => "leader_supervised",
            Template::DeskCompleted => "desk_completed",
            Template::DeskReturned => "desk_returned",
            Template::MonthlySummary => "monthly_summary",
        }
    }

    /// The Fluent message id.
    pub fn message_id(self) -> &'static str {
        match self {
            Template::TicketReceived => "ticket-received",
            Template::TicketCompleted => "ticket-completed",
            Template::RevisitQuestion => "revisit-question",
            Template::TicketAssigned => "ticket-assigned",
            Template::TicketReopened => "ticket-reopened",
            Template::OverdueReminder => "overdue-reminder",
            Template::UrgingLetter => "urging-letter",
            Template::LeaderUrging => "leader-urging",
            Template::LeaderSupervised => "leader-supervised",
            Template::DeskCompleted => "desk-completed",
            Template::DeskReturned => "desk-returned",
            Template::MonthlySummary => "monthly-summary",
        }
    }
}

/// Who a message is for. Addresses are not part of it: they are looked up
/// when delivering (the citizen's from the ticket, officials' from the city
/// file), so a serialized message carries no phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recipient {
    Citizen,
    Unit {
        unit: String,
    },
    /// The leader in charge of a platform (urging letters, supervised items).
    Leader {
        leader: String,
    },
    /// A platform's desk (e.g. the street that whistled, told of the result).
    Desk {
        platform: String,
    },
    /// The head of a unit (the monthly summary).
    UnitHead {
        unit: String,
    },
}

impl Recipient {
    /// A stable name for de-duplication and logs (no personal data).
    pub fn id(&self) -> String {
        match self {
            Recipient::Citizen => "citizen".to_owned(),
            Recipient::Unit { unit } => format!("unit:{unit}"),
            Recipient::Leader { leader } => format!("leader:{leader}"),
            Recipient::Desk { platform } => format!("desk:{platform}"),
            Recipient::UnitHead { unit } => format!("unit-head:{unit}"),
        }
    }
}

/// The citizen's addresses, for the SMS and email channels only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CitizenContact {
    pub phone: Option<String>,
    pub email: Option<String>,
}

impl std::fmt::Debug for CitizenContact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[citizen contact]")
    }
}

/// One message to deliver.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub message_id: String,
    /// What it is about: an event id, or `summary-<YYYY-MM>`.
    pub event_id: String,
    pub event: &'static str,
    pub ticket_id: String,
    pub ticket_number: String,
    pub template: Template,
    pub language: &'static str,
    pub recipient: Recipient,
    pub text: String,
    #[serde(skip)]
    pub citizen: Option<CitizenContact>,
}

/// What a message is about: an event of a ticket, or a monthly summary.
pub struct About {
    pub event_id: String,
    pub event: &'static str,
    pub ticket_id: String,
    pub ticket_number: String,
}

impl Message {
    /// A message with its text rendered in `lang` (or Chinese) from the
    /// template; its id is (what it is about, recipient, template).
    pub fn render(
        catalog: &Catalog,
        about: About,
        template: Template,
        lang: Language,
        recipient: Recipient,
        args: &[(&str, String)],
    ) -> Self {
        let (used, text) = catalog.render(lang, template.message_id(), args);
        Message {
            message_id: format!("{}:{}:{}", about.event_id, recipient.id(), template.as_str()),
            event_id: about.event_id,
            event: about.event,
            ticket_id: about.ticket_id,
            ticket_number: about.ticket_number,
            template,
            language: used.as_str(),
            recipient,
            text,
            citizen: None,
        }
    }

    /// A sample message (config checks, tests).
    pub fn probe() -> Self {
        Message {
            message_id: "probe".into(),
            event_id: "probe".into(),
            event: "probe",
            ticket_id: String::new(),
            ticket_number: "20260101000001".into(),
            template: Template::TicketReceived,
            language: "zh",
            recipient: Recipient::Citizen,
            text: "probe".into(),
            citizen: None,
        }
    }
}

/// What building messages needs besides the event.
pub struct Context<'a> {
    pub catalog: &'a Catalog,
    /// The leader in charge of a platform, if any.
    pub leader_of: &'a dyn Fn(&PlatformId) -> Option<String>,
    /// The language of an official recipient (`unit:<code>`, `leader:<code>`).
    pub language_of: &'a dyn Fn(&Recipient) -> Language,
    /// Categories whose units see the citizen's phone in clear.
    pub contact_categories: &'a [Category],
    /// The signed revisit link of a ticket.
    pub revisit_link: &'a dyn Fn(&TicketId) -> String,
    /// The city's offset: times are written as the city reads them.
    pub offset: time::UtcOffset,
}

/// What the messages of an event are built from. Every kind is named here,
/// so a new one is a decision, not a silence; [`for_event`] follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Nobody is told.
    Nothing,
    /// The event alone says everything.
    Event,
    /// The ticket's record, including this event, is needed too.
    Ticket,
}

pub fn source(kind: &EventKind) -> Source {
    match kind {
        EventKind::Received { .. } => Source::Event,
        EventKind::Dispatched { .. }
        | EventKind::Completed { .. }
        | EventKind::Overdue { .. }
        | EventKind::Reopened { .. }
        | EventKind::Supervised { .. }
        | EventKind::Returned { .. } => Source::Ticket,
        EventKind::Classified { .. }
        | EventKind::Reclassified { .. }
        | EventKind::Answered { .. }
        | EventKind::Delegated { .. }
        | EventKind::Acknowledged
        | EventKind::Whistled { .. }
        | EventKind::ReportedIn { .. }
        | EventKind::ExtensionRequested { .. }
        | EventKind::ExtensionDecided(_)
        | EventKind::DeadlineWarning { .. }
        | EventKind::RevisitRecorded { .. }
        | EventKind::Closed { .. } => Source::Nothing,
    }
}

/// Does this event need the ticket's current record to build its messages?
pub fn needs_ticket(e: &Event) -> bool {
    source(&e.kind) == Source::Ticket
}

fn citizen_contact(request: &whistle_domain::Request) -> Option<CitizenContact> {
    let c = CitizenContact {
        phone: request.contact.phone.as_ref().map(|p| p.expose().to_owned()),
        email: request.contact.email.as_ref().map(|m| m.expose().clone()),
    };
    (c.phone.is_some() || c.email.is_some()).then_some(c)
}

/// The messages an event produces. `ticket` is the projection including
/// this event (required when [`needs_ticket`] says so).
pub fn for_event(e: &Event, ticket: Option<&Ticket>, ctx: &Context<'_>) -> Vec<Message> {
    let build = |template: Template, number: &str, lang: Language, recipient: Recipient, args: &[(&str, String)]| {
        let about = About {
            event_id: e.id.to_string(),
            event: e.kind.name(),
            ticket_id: e.ticket_id.to_string(),
            ticket_number: number.to_owned(),
        };
        Message::render(ctx.catalog, about, template, lang, recipient, args)
    };
    let official = |template: Template, t: &Ticket, recipient: Recipient, args: &[(&str, String)]| {
        let lang = (ctx.language_of)(&recipient);
        build(template, t.number.as_str(), lang, recipient, args)
    };
    let for_citizen = |template: Template, number: &str, request: &whistle_domain::Request, args: &[(&str, String)]| {
        citizen_contact(request)
            .map(|c| Message { citizen: Some(c), ..build(template, number, request.language, Recipient::Citizen, args) })
    };
    let n = |t: &Ticket| ("number", t.number.to_string());
    let ticket = match (source(&e.kind), ticket) {
        (Source::Nothing, _) => return vec![],
        (Source::Event, _) => None,
        (Source::Ticket, Some(t)) => Some(t),
        (Source::Ticket, None) => {
            tracing::warn!(event = %e.id, kind = e.kind.name(), "no ticket record to build the messages from");
            return vec![];
        }
    };
    match (&e.kind, ticket) {
        (EventKind::Received { number, request }, _) => {
            for_citizen(Template::TicketReceived, number.as_str(), request, &[("number", number.to_string())]).into_iter().collect()
        }
        (EventKind::Dispatched { unit, deadline, .. }, Some(t)) => {
            let category = t.classification.as_ref().map(|c| c.category);
            let phone = match &t.request.contact.phone {
                Some(p) if category.is_some_and(|c| ctx.contact_categories.contains(&c)) => p.expose().to_owned(),
                Some(p) => p.masked(),
                None => "-".into(),
            };
            let address = if t.request.location.address.is_empty() { "-".to_owned() } else { t.request.location.address.clone() };
            let args = [
                n(t),
                ("category", category.map_or("other", |c| c.as_str()).to_owned()),
                ("text", t.request.text.clone()),
                ("address", address),
                ("phone", phone),
                ("due", local(deadline.due_at, ctx.offset)),
            ];
            vec![official(Template::TicketAssigned, t, Recipient::Unit { unit: unit.to_string() }, &args)]
        }
        (EventKind::Completed { result }, Some(t)) => {
            let mut out = Vec::new();
            out.extend(for_citizen(Template::TicketCompleted, t.number.as_str(), &t.request, &[n(t), ("result", result.clone())]));
            out.extend(for_citizen(Template::RevisitQuestion, t.number.as_str(), &t.request, &[n(t), ("link", (ctx.revisit_link)(&t.id))]));
            // Platforms that held the ticket before (a street that whistled) are told too.
            let holder = t.state.platform();
            for p in t.platforms.iter().filter(|p| Some(*p) != holder) {
                out.push(official(
                    Template::DeskCompleted,
                    t,
                    Recipient::Desk { platform: p.to_string() },
                    &[n(t), ("result", result.clone())],
                ));
            }
            out
        }
        (EventKind::Reopened { reason, deadline }, Some(t)) => match t.state.open_assignment() {
            Some(a) => vec![official(
                Template::TicketReopened,
                t,
                Recipient::Unit { unit: a.unit.to_string() },
                &[n(t), ("reason", reason.clone()), ("due", local(deadline.due_at, ctx.offset))],
            )],
            None => vec![],
        },
        // A unit sent a misrouted ticket back: the platform's desk must dispatch it again.
        (EventKind::Returned { reason }, Some(t)) => match &t.state {
            whistle_domain::TicketState::Queued { platform, reason: whistle_domain::QueueReason::Returned { unit, .. } } => vec![official(
                Template::DeskReturned,
                t,
                Recipient::Desk { platform: platform.to_string() },
                &[n(t), ("unit", unit.to_string()), ("reason", reason.clone())],
            )],
            _ => vec![],
        },
        (EventKind::Supervised { reason }, Some(t)) => match t.state.platform().and_then(|p| (ctx.leader_of)(p)) {
            Some(leader) => {
                vec![official(Template::LeaderSupervised, t, Recipient::Leader { leader }, &[n(t), ("reason", reason.clone())])]
            }
            None => vec![],
        },
        (EventKind::Overdue { level, unit, due_at, .. }, Some(t)) => {
            let Some(assignment) = t.state.open_assignment() else {
                // Completed between firing and now: no reminder for a done ticket.
                return vec![];
            };
            let args = [n(t), ("due", local(*due_at, ctx.offset)), ("unit", unit.to_string())];
            let template = match level {
                OverdueLevel::First => Template::OverdueReminder,
                OverdueLevel::Second => Template::UrgingLetter,
            };
            let mut out = vec![official(template, t, Recipient::Unit { unit: unit.to_string() }, &args)];
            if *level == OverdueLevel::Second
                && let Some(leader) = (ctx.leader_of)(&assignment.platform)
            {
                out.push(official(Template::LeaderUrging, t, Recipient::Leader { leader }, &args));
            }
            out
        }
        // The kinds `source` says tell nobody, or whose record is missing.
        _ => vec![],
    }
}

/// A time as the city reads it (China Standard Time).
pub fn local(t: time::OffsetDateTime, offset: time::UtcOffset) -> String {
    let t = t.to_offset(offset);
    t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]")).unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use whistle_domain::{Actor, Contact, EventId, Location, Request, TicketNumber};

    fn received(lang: &str, phone: &str) -> Event {
        let request = Request::parse("phone", "", "漏水", Location::default(), Contact::parse("张三", phone, "").unwrap(), lang).unwrap();
        Event {
            id: EventId::new(),
            ticket_id: TicketId::new(),
            occurred_at: time::OffsetDateTime::UNIX_EPOCH,
            actor: Actor::system("t"),
            kind: EventKind::Received { number: TicketNumber::parse("20261122000007").unwrap(), request },
        }
    }

    fn with_ctx<T>(f: impl FnOnce(&Context<'_>) -> T) -> T {
        let catalog = Catalog::builtin().unwrap();
        let ctx = Context {
            catalog: &catalog,
            leader_of: &|_| None,
            language_of: &|_| Language::Zh,
            contact_categories: &[],
            revisit_link: &|t| format!("http://x/r/{t}"),
            offset: time::macros::offset!(+8),
        };
        f(&ctx)
    }

    #[test]
    fn citizen_gets_the_number_in_their_language() {
        let m = with_ctx(|ctx| for_event(&received("en", "13800138000"), None, ctx));
        assert_eq!(m.len(), 1);
        assert!(m[0].text.contains("Ticket number 20261122000007"), "{}", m[0].text);
        assert_eq!(m[0].language, "en");
        assert_eq!(m[0].recipient, Recipient::Citizen);
        assert_eq!(m[0].citizen.as_ref().unwrap().phone.as_deref(), Some("13800138000"));
        let json = serde_json::to_string(&m[0]).unwrap();
        assert!(!json.contains("13800138000") && !json.contains("张三"), "{json}");
    }

    #[test]
    fn every_kind_that_tells_someone_builds_a_message_from_what_source_names() {
        let r = received("zh", "13800138000");
        let mut t = Ticket::open(&r).unwrap();
        let at = |kind| Event { id: EventId::new(), ticket_id: r.ticket_id, occurred_at: r.occurred_at, actor: Actor::system("t"), kind };
        let unit = whistle_domain::UnitCode::parse("city-water").unwrap();
        let deadline = whistle_domain::Deadline {
            due_at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(5),
            second_due_at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(10),
            warn_at: None,
            span: time::Duration::days(5),
            version: EventId::new(),
        };
        let steps = [
            EventKind::classified_surely(
                whistle_domain::Category::Water,
                whistle_domain::Urgency::Ordinary,
                whistle_domain::WhistleLevel::Ordinary,
                whistle_domain::Jurisdiction::default(),
                Language::Zh,
            ),
            EventKind::Dispatched { platform: whistle_domain::PlatformId::City, unit: unit.clone(), deadline, automatic: true },
            EventKind::Overdue {
                level: OverdueLevel::First,
                unit: unit.clone(),
                due_at: deadline.due_at,
                deadline_version: deadline.version,
            },
            EventKind::Completed { result: "已修好".into() },
            EventKind::Reopened { reason: "还在漏".into(), deadline },
        ];
        let mut told = vec![("received", with_ctx(|ctx| for_event(&r, None, ctx)).len())];
        for kind in steps {
            let e = at(kind);
            t.apply(&e).unwrap();
            assert_eq!(source(&e.kind) == Source::Ticket, needs_ticket(&e));
            told.push((e.kind.name(), with_ctx(|ctx| for_event(&e, Some(&t), ctx)).len()));
            if source(&e.kind) == Source::Ticket {
                assert!(with_ctx(|ctx| for_event(&e, None, ctx)).is_empty(), "{} without its ticket", e.kind.name());
            }
        }
        assert_eq!(told, [("received", 1), ("classified", 0), ("dispatched", 1), ("overdue", 1), ("completed", 2), ("reopened", 1)]);
    }

    #[test]
    fn anonymous_requests_get_no_citizen_message() {
        assert!(with_ctx(|ctx| for_event(&received("zh", ""), None, ctx)).is_empty());
    }
}
