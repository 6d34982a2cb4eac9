//! Which events become which messages, to whom, and their text in the
//! citizen's language (zh, en, ja, ko, ru; Chinese when a text is missing).

use serde::Serialize;
use whistle_domain::{Event, EventKind, Language, OverdueLevel, PlatformId, Ticket};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    TicketReceived,
    TicketAssigned,
    TicketCompleted,
    OverdueReminder,
    UrgingLetter,
}

impl Template {
    pub fn as_str(self) -> &'static str {
        match self {
            Template::TicketReceived => "ticket_received",
            Template::TicketAssigned => "ticket_assigned",
            Template::TicketCompleted => "ticket_completed",
            Template::OverdueReminder => "overdue_reminder",
            Template::UrgingLetter => "urging_letter",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recipient {
    /// The citizen, through the SMS gateway: the phone goes to the gateway
    /// only, never to logs.
    Citizen {
        phone: Option<String>,
        email: Option<String>,
    },
    Unit {
        unit: String,
    },
    /// The leader in charge of a platform (urging letters).
    Leader {
        leader: String,
    },
    /// A platform's desk (e.g. the street that whistled, told of the result).
    Desk {
        platform: String,
    },
}

impl Recipient {
    /// A stable name for de-duplication and logs (no personal data).
    pub fn id(&self) -> String {
        match self {
            Recipient::Citizen { .. } => "citizen".to_owned(),
            Recipient::Unit { unit } => format!("unit:{unit}"),
            Recipient::Leader { leader } => format!("leader:{leader}"),
            Recipient::Desk { platform } => format!("desk:{platform}"),
        }
    }
}

/// One message to deliver.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub message_id: String,
    pub event_id: String,
    pub event: &'static str,
    pub ticket_id: String,
    pub ticket_number: String,
    pub template: Template,
    pub language: &'static str,
    pub recipient: Recipient,
    pub text: String,
}

/// Does this event need the ticket's current record to build its messages?
pub fn needs_ticket(e: &Event) -> bool {
    matches!(e.kind, EventKind::Dispatched { .. } | EventKind::Completed { .. } | EventKind::Overdue { .. })
}

/// The messages an event produces. `ticket` is the projection including
/// this event (required when [`needs_ticket`] says so).
/// `leader_of` names the leader in charge of a platform, if any.
pub fn for_event(e: &Event, ticket: Option<&Ticket>, leader_of: impl Fn(&PlatformId) -> Option<String>) -> Vec<Message> {
    let citizen = |t: &Ticket| Recipient::Citizen {
        phone: t.request.contact.phone.as_ref().map(|p| p.expose().to_owned()),
        email: t.request.contact.email.as_ref().map(|m| m.expose().clone()),
    };
    let msg = |template: Template, number: &str, lang: Language, recipient: Recipient, text: String| Message {
        message_id: format!("{}:{}", e.id, recipient.id()),
        event_id: e.id.to_string(),
        event: e.kind.name(),
        ticket_id: e.ticket_id.to_string(),
        ticket_number: number.to_owned(),
        template,
        language: lang.as_str(),
        recipient,
        text,
    };
    match (&e.kind, ticket) {
        (EventKind::Received { number, request }, _) => {
            if request.contact.phone.is_none() && request.contact.email.is_none() {
                return vec![];
            }
            let recipient = Recipient::Citizen {
                phone: request.contact.phone.as_ref().map(|p| p.expose().to_owned()),
                email: request.contact.email.as_ref().map(|m| m.expose().clone()),
            };
            vec![msg(
                Template::TicketReceived,
                number.as_str(),
                request.language,
                recipient,
                received_text(request.language, number.as_str()),
            )]
        }
        (EventKind::Dispatched { unit, deadline, .. }, Some(t)) => {
            let phone = t.request.contact.phone.as_ref().map(|p| p.masked()).unwrap_or_else(|| "-".into());
            let category = t.classification.as_ref().map(|c| c.category.as_str()).unwrap_or("other");
            let text = format!(
                "新工单 {}（{}）：{}。地址：{}。市民电话：{}。办理时限：{}。",
                t.number,
                category,
                t.request.text,
                if t.request.location.address.is_empty() { "-" } else { &t.request.location.address },
                phone,
                local(deadline.due_at)
            );
            vec![msg(Template::TicketAssigned, t.number.as_str(), Language::Zh, Recipient::Unit { unit: unit.to_string() }, text)]
        }
        (EventKind::Completed { result }, Some(t)) => {
            let lang = t.request.language;
            let mut out = Vec::new();
            if t.request.contact.phone.is_some() || t.request.contact.email.is_some() {
                out.push(msg(
                    Template::TicketCompleted,
                    t.number.as_str(),
                    lang,
                    citizen(t),
                    completed_text(lang, t.number.as_str(), result),
                ));
            }
            // Platforms that held the ticket before (a street that whistled) are told too.
            let holder = t.state.platform();
            for p in t.platforms.iter().filter(|p| Some(*p) != holder) {
                let text = format!("工单 {} 已由上级平台办结：{result}", t.number);
                out.push(msg(
                    Template::TicketCompleted,
                    t.number.as_str(),
                    Language::Zh,
                    Recipient::Desk { platform: p.to_string() },
                    text,
                ));
            }
            out
        }
        (EventKind::Overdue { level, unit, due_at, .. }, Some(t)) => {
            let Some(assignment) = t.state.open_assignment() else {
                // Completed between firing and now: no reminder for a done ticket.
                return vec![];
            };
            let (template, text) = match level {
                OverdueLevel::First => {
                    (Template::OverdueReminder, format!("超时提醒：工单 {} 已超过办理时限（{}），请尽快办理。", t.number, local(*due_at)))
                }
                OverdueLevel::Second => (
                    Template::UrgingLetter,
                    format!("催办函：工单 {} 再次超时（原时限 {}），已转分管领导并列入督办。", t.number, local(*due_at)),
                ),
            };
            let mut out = vec![msg(template, t.number.as_str(), Language::Zh, Recipient::Unit { unit: unit.to_string() }, text)];
            if *level == OverdueLevel::Second
                && let Some(leader) = leader_of(&assignment.platform)
            {
                let text = format!(
                    "督办通知：工单 {} 二次超时（原时限 {}），责任单位 {}，已列入督办，请督促办理。",
                    t.number,
                    local(*due_at),
                    unit
                );
                out.push(msg(Template::UrgingLetter, t.number.as_str(), Language::Zh, Recipient::Leader { leader }, text));
            }
            out
        }
        _ => vec![],
    }
}

/// A time as the city reads it (China Standard Time).
pub fn local(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::macros::offset!(+8));
    t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]")).unwrap_or_else(|_| t.to_string())
}

fn received_text(lang: Language, number: &str) -> String {
    match lang {
        Language::Zh => {
            format!("【12345】您的诉求已受理，工单号 {number}。我们将尽快办理并回复您。")
        }
        Language::En => format!("[12345] Your request has been registered. Ticket number {number}. We will handle it and get back to you."),
        Language::Ja => format!("【12345】ご要望を受け付けました。受付番号 {number}。対応後にご連絡いたします。"),
        Language::Ko => {
            format!("[12345] 요청이 접수되었습니다. 접수 번호 {number}. 처리 후 연락드리겠습니다.")
        }
        Language::Ru => format!("[12345] Ваше обращение зарегистрировано. Номер заявки {number}. Мы сообщим вам о результате."),
    }
}

fn completed_text(lang: Language, number: &str, result: &str) -> String {
    match lang {
        Language::Zh => {
            format!("【12345】您的工单 {number} 已办结：{result}。稍后将回访了解您是否满意。")
        }
        Language::En => {
            format!("[12345] Your ticket {number} has been completed: {result}. We will call you to ask whether you are satisfied.")
        }
        Language::Ja => format!("【12345】受付番号 {number} の対応が完了しました：{result}。後日ご満足度を伺います。"),
        Language::Ko => format!("[12345] 접수 번호 {number} 처리가 완료되었습니다: {result}. 만족도 확인을 위해 연락드리겠습니다."),
        Language::Ru => format!("[12345] Заявка {number} выполнена: {result}. Мы свяжемся с вами, чтобы узнать, довольны ли вы."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whistle_domain::{Actor, Contact, EventId, Location, Request, TicketId, TicketNumber};

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

    #[test]
    fn citizen_gets_the_number_in_their_language() {
        let m = for_event(&received("en", "13800138000"), None, |_| None);
        assert_eq!(m.len(), 1);
        assert!(m[0].text.contains("Ticket number 20261122000007"), "{}", m[0].text);
        assert_eq!(m[0].language, "en");
        assert_eq!(m[0].recipient, Recipient::Citizen { phone: Some("13800138000".into()), email: None });
        assert!(!m[0].text.contains("张三"));
    }

    #[test]
    fn anonymous_requests_get_no_citizen_message() {
        assert!(for_event(&received("zh", ""), None, |_| None).is_empty());
    }
}
