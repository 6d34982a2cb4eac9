//! Domain <-> protobuf. Decoding validates every value through the domain's
//! `parse` constructors, so a decoded event is always a valid one.

use prost::Message;
use time::OffsetDateTime;
use whistle_domain::event::{
    Actor, ActorKind, Alternative, Event, EventKind, ExtensionDecision, OverdueLevel, Resolution, RevisitOutcome, SCHEMA_VERSION,
};
use whistle_domain::{
    Category, Deadline, EventId, Jurisdiction, Language, PlatformId, RequestFields, Ticket, TicketId, TicketNumber, TicketState, UnitCode,
    Urgency, WhistleLevel,
};

use crate::v1 as pb;
use crate::{Error, Result};

pub fn timestamp(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.unix_timestamp(), nanos: t.nanosecond() as i32 }
}

pub fn to_datetime(t: &prost_types::Timestamp) -> Result<OffsetDateTime> {
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| Error::Timestamp)
}

fn req_ts(t: &Option<prost_types::Timestamp>, field: &'static str) -> Result<OffsetDateTime> {
    to_datetime(t.as_ref().ok_or(Error::Missing(field))?)
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn deadline_pb(d: &Deadline) -> pb::Deadline {
    pb::Deadline {
        due_at: Some(timestamp(d.due_at)),
        span_seconds: d.span.whole_seconds(),
        version: d.version.to_string(),
        second_due_at: Some(timestamp(d.second_due_at)),
        warn_at: d.warn_at.map(timestamp),
    }
}

fn deadline_domain(d: &Option<pb::Deadline>) -> Result<Deadline> {
    let d = d.as_ref().ok_or(Error::Missing("deadline"))?;
    let due_at = req_ts(&d.due_at, "deadline.due_at")?;
    let span = time::Duration::seconds(d.span_seconds);
    Ok(Deadline {
        due_at,
        second_due_at: match &d.second_due_at {
            Some(t) => to_datetime(t)?,
            None => due_at + span,
        },
        warn_at: d.warn_at.as_ref().map(to_datetime).transpose()?,
        span,
        version: EventId::parse(&d.version)?,
    })
}

/// Encodes an event into the protobuf envelope.
pub fn encode_event(e: &Event) -> Vec<u8> {
    to_pb(e).encode_to_vec()
}

/// Decodes and validates an event from the wire.
pub fn decode_event(bytes: &[u8]) -> Result<Event> {
    from_pb(pb::TicketEvent::decode(bytes)?)
}

fn jurisdiction_pb(j: &Jurisdiction) -> pb::Jurisdiction {
    pb::Jurisdiction {
        county: j.county.clone().unwrap_or_default(),
        street: j.street.clone().unwrap_or_default(),
        community: j.community.clone().unwrap_or_default(),
    }
}

fn jurisdiction_domain(j: pb::Jurisdiction) -> Jurisdiction {
    Jurisdiction { county: opt(&j.county), street: opt(&j.street), community: opt(&j.community) }
}

pub fn to_pb(e: &Event) -> pb::TicketEvent {
    use pb::ticket_event::Body;
    let body = match &e.kind {
        EventKind::Received { number, request } => Body::Received(pb::Received {
            ticket_number: number.to_string(),
            channel: request.channel.as_str().to_owned(),
            external_id: request.external_id.clone().unwrap_or_default(),
            text: request.text.clone(),
            location: Some(pb::Location {
                address: request.location.address.clone(),
                point: request.location.point.map(|p| pb::GeoPoint { lat: p.lat(), lon: p.lon() }),
            }),
            contact: Some(pb::Contact {
                name: request.contact.name.as_ref().map(|n| n.expose().clone()).unwrap_or_default(),
                phone: request.contact.phone.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default(),
                email: request.contact.email.as_ref().map(|m| m.expose().clone()).unwrap_or_default(),
            }),
            language: request.language.as_str().to_owned(),
            service_code: request.service.map(|c| c.as_str().to_owned()).unwrap_or_default(),
            attributes: request
                .attributes
                .iter()
                .map(|(code, values)| pb::Attribute { code: code.clone(), values: values.clone() })
                .collect(),
            media_url: request.media_url.clone().unwrap_or_default(),
        }),
        EventKind::Classified {
            category,
            urgency,
            whistle_level,
            jurisdiction,
            matched_rules,
            language,
            confidence,
            runners_up,
            triage,
            answers,
            answered,
        } => Body::Classified(pb::Classified {
            category: category.as_str().to_owned(),
            urgency: urgency.as_str().to_owned(),
            whistle_level: whistle_level.as_str().to_owned(),
            jurisdiction: Some(jurisdiction_pb(jurisdiction)),
            matched_rules: matched_rules.clone(),
            language: language.as_str().to_owned(),
            confidence: *confidence,
            runners_up: runners_up
                .iter()
                .map(|a| pb::Alternative { category: a.category.as_str().to_owned(), probability: a.probability })
                .collect(),
            triage: *triage,
            answers: answers.iter().map(|h| pb::KnowledgeHit { id: h.id.clone(), score: h.score }).collect(),
            answered: *answered,
        }),
        EventKind::Reclassified { category, urgency, whistle_level, jurisdiction, reason } => Body::Reclassified(pb::Reclassified {
            category: category.as_str().to_owned(),
            urgency: urgency.as_str().to_owned(),
            whistle_level: whistle_level.as_str().to_owned(),
            jurisdiction: Some(jurisdiction_pb(jurisdiction)),
            reason: reason.clone(),
        }),
        EventKind::Answered { answer, knowledge_id } => {
            Body::Answered(pb::Answered { answer: answer.clone(), knowledge_id: knowledge_id.clone() })
        }
        EventKind::Dispatched { platform, unit, deadline, automatic } => Body::Dispatched(pb::Dispatched {
            platform: platform.to_string(),
            unit: unit.to_string(),
            deadline: Some(deadline_pb(deadline)),
            automatic: *automatic,
        }),
        EventKind::Delegated { from, to, reason } => {
            Body::Delegated(pb::Delegated { from_platform: from.to_string(), to_platform: to.to_string(), reason: reason.clone() })
        }
        EventKind::Acknowledged => Body::Acknowledged(pb::Acknowledged {}),
        EventKind::Returned { reason } => Body::Returned(pb::Returned { reason: reason.clone() }),
        EventKind::Whistled { from, to, reason } => {
            Body::Whistled(pb::Whistled { from_platform: from.to_string(), to_platform: to.to_string(), reason: reason.clone() })
        }
        EventKind::ReportedIn { unit } => Body::ReportedIn(pb::ReportedIn { unit: unit.to_string() }),
        EventKind::ExtensionRequested { reason, requested_due } => {
            Body::ExtensionRequested(pb::ExtensionRequested { reason: reason.clone(), requested_due_at: Some(timestamp(*requested_due)) })
        }
        EventKind::ExtensionDecided(d) => Body::ExtensionDecided(match d {
            ExtensionDecision::Granted { deadline, note } => {
                pb::ExtensionDecided { granted: true, deadline: Some(deadline_pb(deadline)), note: note.clone() }
            }
            ExtensionDecision::Refused { note } => pb::ExtensionDecided { granted: false, deadline: None, note: note.clone() },
        }),
        EventKind::DeadlineWarning { deadline_version } => {
            Body::DeadlineWarning(pb::DeadlineWarning { deadline_version: deadline_version.to_string() })
        }
        EventKind::Overdue { level, deadline_version, due_at, unit } => Body::Overdue(pb::Overdue {
            level: level.number(),
            deadline_version: deadline_version.to_string(),
            due_at: Some(timestamp(*due_at)),
            unit: unit.to_string(),
        }),
        EventKind::Supervised { reason } => Body::Supervised(pb::Supervised { reason: reason.clone() }),
        EventKind::Completed { result } => Body::Completed(pb::Completed { result: result.clone() }),
        EventKind::RevisitRecorded { outcome, reason } => {
            Body::RevisitRecorded(pb::RevisitRecorded { outcome: outcome.as_str().to_owned(), reason: reason.clone() })
        }
        EventKind::Reopened { reason, deadline } => {
            Body::Reopened(pb::Reopened { reason: reason.clone(), deadline: Some(deadline_pb(deadline)) })
        }
        EventKind::Closed { resolution } => Body::Closed(pb::Closed { resolution: resolution.as_str().to_owned() }),
    };
    pb::TicketEvent {
        schema_version: SCHEMA_VERSION,
        event_id: e.id.to_string(),
        ticket_id: e.ticket_id.to_string(),
        occurred_at: Some(timestamp(e.occurred_at)),
        actor: Some(pb::Actor { kind: e.actor.kind.as_str().to_owned(), id: e.actor.id.clone() }),
        body: Some(body),
    }
}

pub fn from_pb(e: pb::TicketEvent) -> Result<Event> {
    use pb::ticket_event::Body;
    if e.schema_version > SCHEMA_VERSION {
        return Err(Error::SchemaVersion(e.schema_version));
    }
    let actor = e.actor.ok_or(Error::Missing("actor"))?;
    let kind = match e.body.ok_or(Error::Missing("body"))? {
        Body::Received(r) => {
            let loc = r.location.unwrap_or_default();
            let c = r.contact.unwrap_or_default();
            let request = RequestFields {
                channel: r.channel,
                external_id: r.external_id,
                text: r.text,
                address: loc.address,
                lat: loc.point.map(|p| p.lat),
                lon: loc.point.map(|p| p.lon),
                citizen_name: c.name,
                citizen_phone: c.phone,
                citizen_email: c.email,
                language: r.language,
                service_code: r.service_code,
                attributes: r.attributes.into_iter().map(|a| (a.code, a.values)).collect(),
                media_url: r.media_url,
            }
            .validate()?;
            EventKind::Received { number: TicketNumber::parse(&r.ticket_number)?, request }
        }
        Body::Classified(c) => {
            if !(0.0..=1.0).contains(&c.confidence) {
                return Err(Error::Invalid(whistle_domain::Error::invalid("confidence", format!("{} is not a probability", c.confidence))));
            }
            EventKind::Classified {
                category: Category::parse(&c.category)?,
                urgency: Urgency::parse(&c.urgency)?,
                whistle_level: WhistleLevel::parse(&c.whistle_level)?,
                jurisdiction: jurisdiction_domain(c.jurisdiction.unwrap_or_default()),
                matched_rules: c.matched_rules,
                language: Language::parse(&c.language)?,
                confidence: c.confidence,
                runners_up: c
                    .runners_up
                    .iter()
                    .map(|a| Ok(Alternative { category: Category::parse(&a.category)?, probability: a.probability }))
                    .collect::<Result<_>>()?,
                triage: c.triage,
                answers: c.answers.into_iter().map(|h| whistle_domain::KnowledgeHit { id: h.id, score: h.score }).collect(),
                answered: c.answered,
            }
        }
        Body::Reclassified(c) => EventKind::Reclassified {
            category: Category::parse(&c.category)?,
            urgency: Urgency::parse(&c.urgency)?,
            whistle_level: WhistleLevel::parse(&c.whistle_level)?,
            jurisdiction: jurisdiction_domain(c.jurisdiction.unwrap_or_default()),
            reason: c.reason,
        },
        Body::Answered(a) => EventKind::Answered { answer: a.answer, knowledge_id: a.knowledge_id },
        Body::Dispatched(d) => EventKind::Dispatched {
            platform: PlatformId::parse(&d.platform)?,
            unit: UnitCode::parse(&d.unit)?,
            deadline: deadline_domain(&d.deadline)?,
            automatic: d.automatic,
        },
        Body::Delegated(d) => {
            EventKind::Delegated { from: PlatformId::parse(&d.from_platform)?, to: PlatformId::parse(&d.to_platform)?, reason: d.reason }
        }
        Body::Acknowledged(_) => EventKind::Acknowledged,
        Body::Returned(r) => EventKind::Returned { reason: r.reason },
        Body::Whistled(w) => {
            EventKind::Whistled { from: PlatformId::parse(&w.from_platform)?, to: PlatformId::parse(&w.to_platform)?, reason: w.reason }
        }
        Body::ReportedIn(r) => EventKind::ReportedIn { unit: UnitCode::parse(&r.unit)? },
        Body::ExtensionRequested(r) => {
            EventKind::ExtensionRequested { reason: r.reason, requested_due: req_ts(&r.requested_due_at, "requested_due_at")? }
        }
        Body::ExtensionDecided(d) => EventKind::ExtensionDecided(if d.granted {
            ExtensionDecision::Granted { deadline: deadline_domain(&d.deadline)?, note: d.note }
        } else {
            ExtensionDecision::Refused { note: d.note }
        }),
        Body::DeadlineWarning(w) => EventKind::DeadlineWarning { deadline_version: EventId::parse(&w.deadline_version)? },
        Body::Overdue(o) => EventKind::Overdue {
            level: OverdueLevel::from_number(o.level)?,
            deadline_version: EventId::parse(&o.deadline_version)?,
            due_at: req_ts(&o.due_at, "overdue.due_at")?,
            unit: UnitCode::parse(&o.unit)?,
        },
        Body::Supervised(s) => EventKind::Supervised { reason: s.reason },
        Body::Completed(c) => EventKind::Completed { result: c.result },
        Body::RevisitRecorded(r) => EventKind::RevisitRecorded { outcome: RevisitOutcome::parse(&r.outcome)?, reason: r.reason },
        Body::Reopened(r) => EventKind::Reopened { reason: r.reason, deadline: deadline_domain(&r.deadline)? },
        Body::Closed(c) => EventKind::Closed { resolution: Resolution::parse(&c.resolution)? },
    };
    Ok(Event {
        id: EventId::parse(&e.event_id)?,
        ticket_id: TicketId::parse(&e.ticket_id)?,
        occurred_at: req_ts(&e.occurred_at, "occurred_at")?,
        actor: Actor { kind: ActorKind::parse(&actor.kind)?, id: actor.id },
        kind,
    })
}

/// The citizen-facing view of a ticket.
pub fn ticket_view(t: &Ticket) -> pb::TicketView {
    let c = t.classification.as_ref();
    let (platform, unit, deadline, overdue, result, resolution) = match &t.state {
        TicketState::Received | TicketState::Classified => (None, None, None, 0, None, None),
        TicketState::Queued { platform, .. } => (Some(platform.to_string()), None, None, 0, None, None),
        TicketState::Assigned(a) | TicketState::Acknowledged(a) => (
            Some(a.platform.to_string()),
            Some(a.unit.to_string()),
            Some(timestamp(a.deadline.due_at)),
            a.overdue.map_or(0, |l| l.number()),
            None,
            None,
        ),
        TicketState::Completed { assignment, result, .. } => (
            Some(assignment.platform.to_string()),
            Some(assignment.unit.to_string()),
            Some(timestamp(assignment.deadline.due_at)),
            assignment.overdue.map_or(0, |l| l.number()),
            Some(result.clone()),
            None,
        ),
        TicketState::Closed { resolution } => (None, None, None, 0, t.last_result.clone(), Some(resolution.as_str().to_owned())),
    };
    pb::TicketView {
        ticket_id: t.id.to_string(),
        ticket_number: t.number.to_string(),
        state: t.state.name().to_owned(),
        channel: t.request.channel.as_str().to_owned(),
        category: c.map(|c| c.category.as_str().to_owned()).unwrap_or_default(),
        urgency: c.map(|c| c.urgency.as_str().to_owned()).unwrap_or_default(),
        whistle_level: c.map(|c| c.whistle_level.as_str().to_owned()).unwrap_or_default(),
        jurisdiction: c.map(|c| pb::Jurisdiction {
            county: c.jurisdiction.county.clone().unwrap_or_default(),
            street: c.jurisdiction.street.clone().unwrap_or_default(),
            community: c.jurisdiction.community.clone().unwrap_or_default(),
        }),
        platform: platform.unwrap_or_default(),
        unit: unit.unwrap_or_default(),
        deadline,
        overdue_level: overdue,
        supervised: t.supervised,
        result: result.unwrap_or_default(),
        resolution: resolution.unwrap_or_default(),
        rework_count: t.rework_count,
        received_at: Some(timestamp(t.received_at)),
        updated_at: Some(timestamp(t.updated_at)),
        text: t.request.text.clone(),
        language: t.request.language.as_str().to_owned(),
        lat: t.request.location.point.map(|p| p.lat()),
        lon: t.request.location.point.map(|p| p.lon()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use whistle_domain::{Contact, Location, Request};

    #[test]
    fn events_round_trip() {
        let ticket = TicketId::new();
        let request = Request::parse(
            "phone",
            "ext-1",
            "楼道漏水",
            Location::parse("东城区一街", Some(39.9), Some(116.4)).unwrap(),
            Contact::parse("张三", "13800138000", "").unwrap(),
            "en",
        )
        .unwrap();
        let kinds = vec![
            EventKind::Received { number: TicketNumber::parse("20261122000001").unwrap(), request },
            EventKind::Classified {
                category: Category::Water,
                urgency: Urgency::Urgent,
                whistle_level: WhistleLevel::Key,
                jurisdiction: Jurisdiction { county: Some("east".into()), street: Some("e1".into()), community: Some("e1-c2".into()) },
                matched_rules: vec!["signal:burst-pipe".into()],
                language: whistle_domain::Language::Ru,
                confidence: 0.75,
                runners_up: vec![Alternative { category: Category::Property, probability: 0.125 }],
                triage: true,
                answers: vec![whistle_domain::KnowledgeHit { id: "kb-id-residence-permit-apply".into(), score: 0.5 }],
                answered: false,
            },
            EventKind::Reclassified {
                category: Category::Heating,
                urgency: Urgency::Important,
                whistle_level: WhistleLevel::Difficult,
                jurisdiction: Jurisdiction::county("east"),
                reason: "radiators, not pipes".into(),
            },
            EventKind::Dispatched {
                platform: PlatformId::parse("county:east").unwrap(),
                unit: UnitCode::parse("water-group").unwrap(),
                deadline: Deadline {
                    due_at: datetime!(2026-11-22 12:00 UTC),
                    second_due_at: datetime!(2026-11-22 14:00 UTC),
                    warn_at: Some(datetime!(2026-11-22 11:36 UTC)),
                    span: time::Duration::hours(2),
                    version: EventId::new(),
                },
                automatic: true,
            },
            EventKind::Overdue {
                level: OverdueLevel::Second,
                deadline_version: EventId::new(),
                due_at: datetime!(2026-11-22 14:00 UTC),
                unit: UnitCode::parse("water-group").unwrap(),
            },
            EventKind::ExtensionDecided(ExtensionDecision::Refused { note: "no".into() }),
            EventKind::Closed { resolution: Resolution::Satisfied },
        ];
        for kind in kinds {
            let e = Event {
                id: EventId::new(),
                ticket_id: ticket,
                occurred_at: datetime!(2026-11-22 10:00:00.5 UTC),
                actor: Actor::system("test"),
                kind,
            };
            assert_eq!(decode_event(&encode_event(&e)).unwrap(), e);
        }
    }

    #[test]
    fn garbage_and_invalid_values_are_refused_with_a_reason() {
        assert!(matches!(decode_event(b"\xff\xff\xff garbage"), Err(Error::Decode(_))));
        let mut e = to_pb(&Event {
            id: EventId::new(),
            ticket_id: TicketId::new(),
            occurred_at: datetime!(2026-11-22 10:00 UTC),
            actor: Actor::system("test"),
            kind: EventKind::Completed { result: "ok".into() },
        });
        e.body = Some(pb::ticket_event::Body::Closed(pb::Closed { resolution: "maybe".into() }));
        let err = from_pb(e.clone()).unwrap_err().to_string();
        assert!(err.contains("resolution"), "{err}");
        e.body = None;
        assert!(from_pb(e).unwrap_err().to_string().contains("body"));
    }
}
