//! Closing the loop on the real broker, Redis, SMTP server and HTTP
//! receivers: every completed ticket is revisited; satisfied closes it,
//! unsatisfied sends it back to the same unit with the rework deadline,
//! unreachable is tried on other days and closed as unreachable; citizens
//! answer by SMS reply or signed link, in their own language.

use std::time::Duration;
use time::macros::datetime;
use tonic::Code;
use whistle_domain::{EventKind, RevisitOutcome};
use whistle_proto::v1 as pb;
use whistle_tests::webhook::is;
use whistle_tests::{Behaviour, Options, Platform, request, wait_mails};

const WAIT: Duration = Duration::from_secs(60);

fn china(t: &Option<whistle_proto::prost_types::Timestamp>) -> time::OffsetDateTime {
    whistle_proto::to_datetime(t.as_ref().expect("timestamp")).unwrap().to_offset(time::macros::offset!(+8))
}

fn rfc(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).expect("rfc3339").to_offset(time::macros::offset!(+8))
}

/// A water leak with this phone, dispatched to city-water and completed by it.
async fn completed_leak(p: &Platform, phone: &str, language: &str, email: &str) -> pb::SubmitRequestResponse {
    let mut req = request("自来水管漏水了 water pipe leak", "东城区景山");
    req.citizen_phone = phone.into();
    req.language = language.into();
    req.citizen_email = email.into();
    let t = p.intake().await.submit_request(req).await.expect("submit").into_inner();
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned" && v.unit == "city-water").await;
    complete(p, &t.ticket_number, "已更换破损水管").await;
    t
}

async fn complete(p: &Platform, number: &str, result: &str) {
    p.complete_as("city-water", number, result).await;
}

/// Waits until the agent's queue (due now, or all with `later`) lists the ticket.
async fn queued(p: &Platform, agent: &str, number: &str, later: bool) -> pb::RevisitTask {
    p.wait_revisit_queued(agent, number, later).await
}

async fn is_due_now(p: &Platform, agent: &str, number: &str) -> bool {
    let tasks =
        p.revisit_as(agent).await.list_due(pb::ListDueRequest { limit: 100, include_later: false }).await.expect("list").into_inner().tasks;
    tasks.iter().any(|t| t.ticket_number == number)
}

async fn record(p: &Platform, agent: &str, number: &str, outcome: &str, reason: &str) -> Result<pb::RecordResponse, tonic::Status> {
    p.revisit_as(agent)
        .await
        .record(pb::RecordRequest { ticket: number.into(), outcome: outcome.into(), reason: reason.into() })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsatisfied_goes_back_to_the_same_unit_and_satisfied_closes() {
    let p = Platform::start("revisit-loop").await;
    // Monday 2026-11-23 10:00: completed now, the revisit is due one working day later.
    let t = completed_leak(&p, "13800138001", "zh", "").await;
    let task = queued(&p, "agent:wang", &t.ticket_number, true).await;
    assert_eq!(rfc(&task.due_at), datetime!(2026-11-24 10:00 +08:00));
    assert_eq!((task.unit.as_str(), task.result.as_str(), task.attempts, task.max_attempts), ("city-water", "已更换破损水管", 0, 3));
    assert_eq!(task.citizen_phone, "13800138001", "the agent who calls sees the number");
    assert!(!is_due_now(&p, "agent:wang", &t.ticket_number).await, "not due before a working day has passed");

    p.clock.set(datetime!(2026-11-24 10:00 +08:00));
    assert!(is_due_now(&p, "agent:wang", &t.ticket_number).await);
    // Wang claims it: Li neither sees it nor can record it.
    p.revisit_as("agent:wang").await.claim(pb::RevisitRef { ticket: t.ticket_number.clone() }).await.expect("claim");
    assert!(!is_due_now(&p, "agent:li", &t.ticket_number).await);
    let taken = p.revisit_as("agent:li").await.claim(pb::RevisitRef { ticket: t.ticket_number.clone() }).await.unwrap_err();
    assert_eq!(taken.code(), Code::FailedPrecondition, "{taken:?}");
    assert!(taken.message().contains("wang"), "{taken:?}");
    assert_eq!(record(&p, "agent:li", &t.ticket_number, "satisfied", "").await.unwrap_err().code(), Code::FailedPrecondition);
    // Only agents work the queue; a reason is required when unsatisfied.
    let desk = p.revisit_as("city").await.list_due(pb::ListDueRequest::default()).await.unwrap_err();
    assert_eq!(desk.code(), Code::PermissionDenied);
    let no_reason = record(&p, "agent:wang", &t.ticket_number, "unsatisfied", " ").await.unwrap_err();
    assert_eq!(no_reason.code(), Code::InvalidArgument);
    assert!(no_reason.message().contains("reason"), "{no_reason:?}");
    assert_eq!(record(&p, "agent:wang", &t.ticket_number, "happy", "").await.unwrap_err().code(), Code::InvalidArgument);

    // Unsatisfied: reopened at city-water with the rework deadline (3 working days).
    let r = record(&p, "agent:wang", &t.ticket_number, "unsatisfied", "厨房还在漏水").await.expect("record");
    assert_eq!(r.next, "reopened");
    assert_eq!(rfc(&r.rework_due_at), datetime!(2026-11-27 10:00 +08:00));
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    assert_eq!((v.unit.as_str(), v.rework_count), ("city-water", 1));
    assert_eq!(china(&v.deadline), datetime!(2026-11-27 10:00 +08:00));
    let told = p.webhook.wait_for(1, WAIT, is("ticket_reopened", &t.ticket_number)).await;
    assert_eq!(told[0]["recipient"]["unit"], "city-water");
    assert!(told[0]["text"].as_str().unwrap().contains("厨房还在漏水"), "{}", told[0]["text"]);
    // The sla-timer follows the new deadline.
    p.wait_due(&t.ticket_id, WAIT, |due| due.iter().any(|(_, at)| *at == datetime!(2026-11-27 10:00 +08:00))).await;

    // Completed again: revisited again, and satisfied closes it.
    complete(&p, &t.ticket_number, "已彻底修复").await;
    let again = queued(&p, "agent:li", &t.ticket_number, true).await;
    assert_eq!((again.attempts, again.result.as_str()), (0, "已彻底修复"));
    assert_eq!(rfc(&again.due_at), datetime!(2026-11-25 10:00 +08:00));
    p.clock.set(datetime!(2026-11-25 09:00 +08:00));
    let r = record(&p, "agent:li", &t.ticket_number, "satisfied", "").await.expect("record");
    assert_eq!(r.next, "closed");
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "closed").await;
    assert_eq!(v.resolution, "satisfied");
    p.wait_timers(&t.ticket_id, 0, WAIT).await; // no reminder for a closed ticket
    assert_eq!(
        record(&p, "agent:li", &t.ticket_number, "satisfied", "").await.unwrap_err().code(),
        Code::NotFound,
        "nothing left to revisit"
    );

    let trail: Vec<&'static str> =
        p.events_for(&t.ticket_id).await.iter().map(|e| e.kind.name()).filter(|n| !matches!(*n, "deadline_warning")).collect();
    let tail = &trail[trail.iter().position(|n| *n == "completed").unwrap()..];
    assert_eq!(tail, ["completed", "revisit_recorded", "reopened", "completed", "revisit_recorded", "closed"]);
    let events = p.events_for(&t.ticket_id).await;
    let agents: Vec<String> = events.iter().filter(|e| e.kind.name() == "revisit_recorded").map(|e| e.actor.id.clone()).collect();
    assert_eq!(agents, ["wang", "li"]);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_three_times_on_different_days_closes_as_unreachable() {
    let p = Platform::start("revisit-unreachable").await;
    let t = completed_leak(&p, "13800138002", "zh", "").await;
    queued(&p, "agent:wang", &t.ticket_number, true).await;
    for (day, next) in [(24, "retry"), (25, "retry"), (26, "closed")] {
        p.clock.set(datetime!(2026-11-01 10:00 +08:00).replace_day(day).unwrap());
        let task = queued(&p, "agent:wang", &t.ticket_number, false).await;
        assert_eq!(task.attempts, day as u32 - 24, "tries so far");
        let r = record(&p, "agent:wang", &t.ticket_number, "unreachable", "无人接听").await.expect("record");
        assert_eq!(r.next, next);
        if day == 24 {
            // Redis loses the queue: it comes back from the events, one try recorded.
            p.wipe_revisits().await;
            let back = queued(&p, "agent:wang", &t.ticket_number, true).await;
            assert_eq!((back.attempts, rfc(&back.due_at)), (1, datetime!(2026-11-25 10:00 +08:00)));
        }
        if next == "retry" {
            // Tried again on the next working day, not the same one.
            assert_eq!(rfc(&r.next_due_at), datetime!(2026-11-01 10:00 +08:00).replace_day(day + 1).unwrap());
            assert!(!is_due_now(&p, "agent:wang", &t.ticket_number).await);
        }
    }
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "closed").await;
    assert_eq!(v.resolution, "unreachable");
    let outcomes: Vec<RevisitOutcome> = p
        .events_for(&t.ticket_id)
        .await
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::RevisitRecorded { outcome, .. } => Some(outcome),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes, [RevisitOutcome::Unreachable; 3]);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizens_answer_by_sms_reply_or_signed_link() {
    let p = Platform::start("revisit-sms").await;
    let a = completed_leak(&p, "13800138003", "zh", "").await;
    queued(&p, "agent:wang", &a.ticket_number, true).await;
    // The gateway posts replies as the citizen typed them, in its own format.
    assert_eq!(p.sms_reply("+86 138 0013 8003", "好的").await.0, 400, "not 1 or 2");
    assert_eq!(p.sms_reply("13900000000", "1").await.0, 404, "no revisit waits for this number");
    let (status, body) = p.sms_reply("+86 138 0013 8003", "1").await;
    assert_eq!((status, body["next"].as_str(), body["ticket_number"].as_str()), (200, Some("closed"), Some(a.ticket_number.as_str())));
    let v = p.wait_ticket(&a.ticket_number, WAIT, |v| v.state == "closed").await;
    assert_eq!(v.resolution, "satisfied");
    let by = p.events_for(&a.ticket_id).await.into_iter().find(|e| e.kind.name() == "revisit_recorded").unwrap().actor;
    assert_eq!(by.kind, whistle_domain::ActorKind::Citizen);

    // The revisit question carries a signed link; the page it opens records the answer.
    let b = completed_leak(&p, "13800138004", "zh", "").await;
    let question = p.sms.wait_for(1, WAIT, is("revisit_question", &b.ticket_number)).await;
    let text = question[0]["text"].as_str().unwrap();
    assert!(text.contains("回复 1 满意"), "{text}");
    let token = text.split("http://revisit.test/r/").nth(1).expect("link in the SMS").split_whitespace().next().unwrap().to_owned();
    queued(&p, "agent:wang", &b.ticket_number, true).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/r/", p.revisit_http);
    let page = http.get(format!("{base}{token}")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(&b.ticket_number));
    let forged = format!("{}.{}", a.ticket_id, token.split_once('.').unwrap().1);
    assert_eq!(http.get(format!("{base}{forged}")).send().await.unwrap().status(), 404, "a link signed for another ticket");
    let answered = http.post(format!("{base}{token}")).form(&[("answer", "2"), ("reason", "水压还是很低")]).send().await.unwrap();
    assert_eq!(answered.status(), 200);
    let v = p.wait_ticket(&b.ticket_number, WAIT, |v| v.state == "assigned").await;
    assert_eq!((v.unit.as_str(), v.rework_count), ("city-water", 1));
    let reopened = p.events_for(&b.ticket_id).await.into_iter().find_map(|e| match e.kind {
        EventKind::Reopened { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(reopened.as_deref(), Some("水压还是很低"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_who_wrote_in_english_gets_english_by_sms_and_email() {
    let p = Platform::start("revisit-english").await;
    let email = format!("citizen-{}@example.test", p.prefix.trim_end_matches('.'));
    let t = completed_leak(&p, "13800138005", "en", &email).await;
    for template in ["ticket_received", "ticket_completed", "revisit_question"] {
        let m = p.sms.wait_for(1, WAIT, is(template, &t.ticket_number)).await;
        assert_eq!(m.len(), 1, "{template} once");
        assert_eq!((m[0]["language"].as_str(), m[0]["to"].as_str()), (Some("en"), Some("13800138005")), "{template}");
    }
    let completed = &p.sms.messages(is("ticket_completed", &t.ticket_number))[0];
    assert!(completed["text"].as_str().unwrap().starts_with("[12345] Your ticket"), "{}", completed["text"]);
    let question = &p.sms.messages(is("revisit_question", &t.ticket_number))[0];
    assert!(question["text"].as_str().unwrap().contains("Reply 1 if satisfied"), "{}", question["text"]);
    // The same three by email, through the SMTP server.
    let mails = wait_mails(&email, 3, WAIT).await;
    assert_eq!(mails.len(), 3, "{mails:#?}");
    assert!(mails.iter().all(|m| m.subject.contains(&t.ticket_number)), "{mails:#?}");
    assert!(mails.iter().any(|m| m.body.contains("Ticket number") && m.body.contains(&t.ticket_number)), "{mails:#?}");
    assert!(mails.iter().all(|m| !m.raw.contains("张三")));
    // The unit still reads Chinese, with the phone masked (water needs no contact).
    let unit = p.webhook.wait_for(1, WAIT, is("ticket_assigned", &t.ticket_number)).await;
    assert_eq!(unit[0]["language"], "zh");
    assert!(unit[0]["text"].as_str().unwrap().contains("市民电话：138****8005"), "{}", unit[0]["text"]);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_down_for_a_while_then_up_delivers_every_message_once() {
    let p = Platform::start_with(
        "gateway-outage",
        Options { sms: Behaviour::FailFirst(usize::MAX), notifier_attempts: 2, ..Options::default() },
    )
    .await;
    let mut numbers = Vec::new();
    for i in 0..3 {
        let mut req = request("自来水管漏水了", "东城区景山");
        req.citizen_phone = format!("1380013810{i}");
        numbers.push(p.intake().await.submit_request(req).await.expect("submit").into_inner().ticket_number);
    }
    // The gateway refuses for a while: nothing gets through, nothing is dead-lettered.
    whistle_tests::eventually("8 refused tries at the gateway", WAIT, Duration::from_millis(50), || async {
        let failed = p.sms.failed();
        if failed >= 8 { Ok(()) } else { Err(failed) }
    })
    .await;
    assert!(p.sms.messages(|_| true).is_empty());
    p.sms.set_behaviour(Behaviour::Accept);
    for n in &numbers {
        p.sms.wait_for(1, WAIT, is("ticket_received", n)).await;
        p.webhook.wait_for(1, WAIT, is("ticket_assigned", n)).await;
    }
    for n in &numbers {
        assert_eq!(p.sms.messages(is("ticket_received", n)).len(), 1, "{n} once");
        assert_eq!(p.webhook.messages(is("ticket_assigned", n)).len(), 1, "{n} once");
    }
    let dead = p.read_topic(&p.topics().dead_letter()).await;
    assert!(dead.iter().all(|m| m.headers.get("dlq-service").map(String::as_str) != Some("notifier")), "an outage loses nothing");
    p.shutdown().await;
}
