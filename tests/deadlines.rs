//! Deadlines that never miss, on the real broker and Redis: each timer fires
//! once at the working-day instant the policy and calendar give, a new
//! deadline supersedes the old timers, and timers lost from Redis are rebuilt
//! from Kafka.

use std::time::Duration;
use time::macros::datetime;
use whistle_domain::event::ExtensionDecision;
use whistle_domain::{Actor, Clock, Deadline, Event, EventId, EventKind, OverdueLevel, TicketId, TimerKind};
use whistle_proto::v1 as pb;
use whistle_tests::webhook::is;
use whistle_tests::{Options, Platform, request};

const WAIT: Duration = Duration::from_secs(60);

async fn submit(p: &Platform, text: &str, address: &str) -> pb::SubmitRequestResponse {
    p.intake().await.submit_request(request(text, address)).await.expect("submit").into_inner()
}

fn china(t: &Option<whistle_proto::prost_types::Timestamp>) -> time::OffsetDateTime {
    whistle_proto::to_datetime(t.as_ref().expect("timestamp")).unwrap().to_offset(time::macros::offset!(+8))
}

async fn overdue(p: &Platform, ticket: &str, level: OverdueLevel) -> Vec<Event> {
    p.events_for(ticket).await.into_iter().filter(|e| matches!(&e.kind, EventKind::Overdue { level: l, .. } if *l == level)).collect()
}

async fn armed(p: &Platform, ticket: &str, n: usize) -> Vec<(TimerKind, time::OffsetDateTime)> {
    p.wait_due(ticket, WAIT, |due| due.len() == n).await
}

fn at(due: &[(TimerKind, time::OffsetDateTime)], kind: TimerKind) -> Option<time::OffsetDateTime> {
    due.iter().find(|(k, _)| *k == kind).map(|(_, t)| *t)
}

fn holidays_2026() -> whistle_dispatcher::CalendarSettings {
    whistle_dispatcher::CalendarSettings {
        holidays: (1..=7).map(|d| format!("2026-10-0{d}")).collect(),
        makeup_workdays: vec!["2026-09-27".into(), "2026-10-10".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friday_afternoon_deadline_lands_on_monday_and_each_timer_fires_once() {
    let start = datetime!(2026-11-20 15:00 +08:00);
    let p = Platform::start_with("friday", Options { start, ..Options::default() }).await;
    // A whole building without heating: important (an elderly person alone would make it urgent).
    let t = submit(&p, "整栋楼的暖气都不热，找物业说热力公司在查，一直没人来", "东城区安定门").await;
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    assert_eq!((v.category.as_str(), v.urgency.as_str()), ("heating", "important"));
    assert_eq!(china(&v.deadline), datetime!(2026-11-23 15:00 +08:00), "one working day from Friday 15:00");
    // Heating needs a visit: this unit sees the citizen's phone in clear.
    let assigned = p.webhook.wait_for(1, WAIT, is("ticket_assigned", &t.ticket_number)).await;
    assert!(assigned[0]["text"].as_str().unwrap().contains("市民电话：13800138000"), "{}", assigned[0]["text"]);

    let due = armed(&p, &t.ticket_id, 3).await;
    assert_eq!(at(&due, TimerKind::FirstOverdue), Some(datetime!(2026-11-23 15:00 +08:00)));
    assert_eq!(at(&due, TimerKind::SecondOverdue), Some(datetime!(2026-11-24 15:00 +08:00)), "again one working day");
    let warning = at(&due, TimerKind::Warning).unwrap();
    assert!(start < warning && warning < datetime!(2026-11-23 15:00 +08:00));

    // Monday 14:59: the warning has fired, the reminder has not.
    p.clock.set(datetime!(2026-11-23 14:59 +08:00));
    p.firing_round_passed(&t.ticket_id).await;
    let due = p.due_of(&t.ticket_id).await;
    assert_eq!(at(&due, TimerKind::Warning), None);
    assert_eq!(at(&due, TimerKind::FirstOverdue), Some(datetime!(2026-11-23 15:00 +08:00)));
    assert!(overdue(&p, &t.ticket_id, OverdueLevel::First).await.is_empty());

    // Monday 15:00: the reminder.
    p.clock.set(datetime!(2026-11-23 15:00 +08:00));
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.overdue_level == 1).await;
    p.webhook.wait_for(1, WAIT, is("overdue_reminder", &t.ticket_number)).await;

    // Tuesday 14:59: no urging letter yet; 15:00: the letter, supervised.
    p.clock.set(datetime!(2026-11-24 14:59 +08:00));
    p.firing_round_passed(&t.ticket_id).await;
    assert!(overdue(&p, &t.ticket_id, OverdueLevel::Second).await.is_empty());
    p.clock.set(datetime!(2026-11-24 15:00 +08:00));
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.overdue_level == 2).await;
    assert!(v.supervised);
    // The urging letter goes to the unit and to the city's leader in charge.
    let letters =
        p.webhook.wait_for(2, WAIT, |m| is("urging_letter", &t.ticket_number)(m) || is("leader_urging", &t.ticket_number)(m)).await;
    let mut to: Vec<String> = letters
        .iter()
        .map(|m| {
            format!(
                "{}:{}",
                m["recipient"]["kind"].as_str().unwrap(),
                m["recipient"]["unit"].as_str().or(m["recipient"]["leader"].as_str()).unwrap()
            )
        })
        .collect();
    to.sort();
    assert_eq!(to, ["leader:city-deputy-mayor", "unit:city-heating"]);
    // The leader also gets it by SMS, to the number in the city file.
    let sms = p.sms.wait_for(1, WAIT, is("leader_urging", &t.ticket_number)).await;
    assert_eq!((sms[0]["to"].as_str(), sms[0]["recipient"]["id"].as_str()), (Some("13901000001"), Some("leader:city-deputy-mayor")));

    assert_eq!(overdue(&p, &t.ticket_id, OverdueLevel::First).await.len(), 1);
    assert_eq!(overdue(&p, &t.ticket_id, OverdueLevel::Second).await.len(), 1);
    let warnings = p.events_for(&t.ticket_id).await.iter().filter(|e| e.kind.name() == "deadline_warning").count();
    assert_eq!(warnings, 1);
    assert_eq!(p.webhook.messages(is("overdue_reminder", &t.ticket_number)).len(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holiday_week_is_skipped() {
    let start = datetime!(2026-09-30 10:00 +08:00);
    let p = Platform::start_with("holiday", Options { start, calendar: holidays_2026(), ..Options::default() }).await;
    // A whole building without water: important.
    let t = submit(&p, "整栋楼停水了，从早上到现在一滴水都没有", "东城区安定门").await;
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    // Wednesday before National Day + 1 working day: October 1-7 are off.
    assert_eq!(china(&v.deadline), datetime!(2026-10-08 10:00 +08:00));
    let due = armed(&p, &t.ticket_id, 3).await;
    assert_eq!(at(&due, TimerKind::SecondOverdue), Some(datetime!(2026-10-09 10:00 +08:00)));

    p.clock.set(datetime!(2026-10-07 23:59 +08:00));
    p.firing_round_passed(&t.ticket_id).await;
    assert!(overdue(&p, &t.ticket_id, OverdueLevel::First).await.is_empty(), "no reminder during the holiday");
    p.clock.set(datetime!(2026-10-08 10:00 +08:00));
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.overdue_level == 1).await;
    assert_eq!(overdue(&p, &t.ticket_id, OverdueLevel::First).await.len(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_supersedes_the_old_timers() {
    let p = Platform::start("extension").await;
    let t = submit(&p, "水管漏水", "海淀区中关村").await;
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    let old_due = china(&v.deadline);
    armed(&p, &t.ticket_id, 3).await;

    let ticket = TicketId::parse(&t.ticket_id).unwrap();
    // The unit asks, the city's desk grants.
    let by = |actor: Actor, kind| Event { id: EventId::new(), ticket_id: ticket, occurred_at: p.clock.now(), actor, kind };
    let ev = |kind| by(Actor::operator("desk:city"), kind);
    p.publish_event(&by(
        Actor::unit(&whistle_domain::UnitCode::parse(&v.unit).unwrap()),
        EventKind::ExtensionRequested { reason: "需要更换主管道".into(), requested_due: datetime!(2026-12-03 10:00 +08:00) },
    ))
    .await;
    let decided_id = EventId::new();
    let new = Deadline {
        due_at: datetime!(2026-12-03 10:00 +08:00),
        second_due_at: datetime!(2026-12-08 10:00 +08:00),
        warn_at: None,
        span: time::Duration::days(10),
        version: decided_id,
    };
    let decided =
        Event { id: decided_id, ..ev(EventKind::ExtensionDecided(ExtensionDecision::Granted { deadline: new, note: "同意".into() })) };
    p.publish_event(&decided).await;
    p.wait_ticket(&t.ticket_number, WAIT, |v| china(&v.deadline) == new.due_at).await;
    let due = armed(&p, &t.ticket_id, 2).await;
    assert_eq!(at(&due, TimerKind::FirstOverdue), Some(new.due_at));
    assert_eq!(at(&due, TimerKind::Warning), None, "the old warning is gone");

    // The old deadline passes: nothing.
    p.clock.set(old_due + time::Duration::minutes(30));
    p.firing_round_passed(&t.ticket_id).await;
    assert!(overdue(&p, &t.ticket_id, OverdueLevel::First).await.is_empty());
    // The new one passes: one reminder, for the new version.
    p.clock.set(new.due_at + time::Duration::minutes(1));
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.overdue_level == 1).await;
    let fired = overdue(&p, &t.ticket_id, OverdueLevel::First).await;
    assert_eq!(fired.len(), 1);
    assert!(matches!(&fired[0].kind, EventKind::Overdue { deadline_version, .. } if *deadline_version == decided.id));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_lost_from_redis_are_rebuilt_from_kafka() {
    let p = Platform::start("rebuild").await;
    let urgent = submit(&p, "燃气泄漏，紧急", "西城区新街口").await;
    let ordinary = submit(&p, "自来水有点发黄，烧开了还有一层水垢", "西城区金融街").await;
    let vu = p.wait_ticket(&urgent.ticket_number, WAIT, |v| v.state == "assigned").await;
    let vo = p.wait_ticket(&ordinary.ticket_number, WAIT, |v| v.state == "assigned").await;
    assert_eq!(vu.urgency, "urgent");
    armed(&p, &urgent.ticket_id, 3).await;
    armed(&p, &ordinary.ticket_id, 3).await;

    // The urgent ticket's reminder fires (2 h), then Redis loses everything.
    p.clock.set(china(&vu.deadline) + time::Duration::minutes(1));
    p.wait_ticket(&urgent.ticket_number, WAIT, |v| v.overdue_level == 1).await;
    p.wipe_timers().await;

    // The sla-timer notices and rebuilds: the fired ones stay fired.
    let due_u = armed(&p, &urgent.ticket_id, 1).await;
    assert_eq!(due_u[0].0, TimerKind::SecondOverdue);
    let due_o = armed(&p, &ordinary.ticket_id, 3).await;
    assert_eq!(at(&due_o, TimerKind::FirstOverdue), Some(china(&vo.deadline)));

    p.clock.set(china(&vo.deadline) + time::Duration::minutes(1));
    p.wait_ticket(&ordinary.ticket_number, WAIT, |v| v.overdue_level == 1).await;
    p.wait_ticket(&urgent.ticket_number, WAIT, |v| v.overdue_level == 2).await;
    assert_eq!(overdue(&p, &urgent.ticket_id, OverdueLevel::First).await.len(), 1, "not fired again after the rebuild");
    assert_eq!(overdue(&p, &urgent.ticket_id, OverdueLevel::Second).await.len(), 1);
    assert_eq!(overdue(&p, &ordinary.ticket_id, OverdueLevel::First).await.len(), 1);
    p.shutdown().await;
}
