//! The spine, end to end on the real broker and Redis: a request becomes a
//! ticket, is classified, dispatched with a deadline, reminded when overdue,
//! completed, and everyone is told once.

use std::time::Duration;
use tonic::Code;
use whistle_domain::{EventKind, OverdueLevel};
use whistle_proto::v1 as pb;
use whistle_tests::webhook::is;
use whistle_tests::{Behaviour, Options, Platform, request};

const WAIT: Duration = Duration::from_secs(60);

type Mutation = Box<dyn Fn(&mut pb::SubmitRequestRequest)>;

async fn submit(p: &Platform, req: pb::SubmitRequestRequest) -> pb::SubmitRequestResponse {
    p.intake().await.submit_request(req).await.expect("submit").into_inner()
}

async fn assigned(p: &Platform, number: &str) -> pb::TicketView {
    p.wait_ticket(number, WAIT, |v| v.state == "assigned").await
}

fn overdue_events(events: &[whistle_domain::Event], level: OverdueLevel) -> usize {
    events.iter().filter(|e| matches!(&e.kind, EventKind::Overdue { level: l, .. } if *l == level)).count()
}

fn china(t: &Option<whistle_proto::prost_types::Timestamp>) -> time::OffsetDateTime {
    whistle_proto::to_datetime(t.as_ref().expect("timestamp")).unwrap().to_offset(time::macros::offset!(+8))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reaches_the_right_unit_and_everyone_is_told_once() {
    let p = Platform::start("flow").await;

    let water = submit(&p, request("自来水发黄，还有股铁锈味，烧开了有一层水垢", "东城区景山街道3号楼")).await;
    assert_eq!(water.ticket_number.len(), 14, "{water:?}");
    assert!(water.ticket_number.starts_with("20261123"), "dated by the city's clock: {water:?}");
    assert!(!water.duplicate);

    let noise = submit(&p, request("晚上施工噪音扰民", "西城区新街口")).await;
    assert_ne!(noise.ticket_number, water.ticket_number);

    let v = assigned(&p, &water.ticket_number).await;
    assert_eq!((v.category.as_str(), v.urgency.as_str()), ("water", "ordinary"));
    assert_eq!((v.platform.as_str(), v.unit.as_str()), ("city", "city-water"));
    let j = v.jurisdiction.clone().unwrap();
    assert_eq!((j.county.as_str(), j.street.as_str()), ("dongcheng", "dc-jingshan"));
    // Ordinary: 5 working days from Monday 10:00 is the next Monday 10:00.
    assert_eq!(china(&v.deadline), time::macros::datetime!(2026-11-30 10:00 +08:00));

    // Noise starts at the street (no street dispatcher runs here: it waits on that desk).
    let v = p.wait_ticket(&noise.ticket_number, WAIT, |v| v.state == "queued").await;
    assert_eq!((v.category.as_str(), v.platform.as_str()), ("noise", "street:xc-xinjiekou"));
    assert_eq!(v.jurisdiction.unwrap().street, "xc-xinjiekou");

    // The citizen got the number, the unit got the ticket, with the phone masked.
    let got = p.sms.wait_for(1, WAIT, is("ticket_received", &water.ticket_number)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["recipient"]["kind"], "citizen");
    assert_eq!(got[0]["to"], "13800138000", "the SMS gateway gets the number, nothing else does");
    assert!(got[0]["text"].as_str().unwrap().contains(&water.ticket_number));
    let unit_msgs = p.webhook.wait_for(1, WAIT, is("ticket_assigned", &water.ticket_number)).await;
    assert_eq!(unit_msgs[0]["recipient"]["unit"], "city-water");
    let text = unit_msgs[0]["text"].as_str().unwrap();
    assert!(text.contains("138****8000") && !text.contains("13800138000") && !text.contains("张三"), "{text}");

    // Completion: only the assignee, only once.
    let mut desk = p.desk_as("unit:city-water").await;
    let anonymous = p
        .desk_with_token(None)
        .await
        .complete(pb::CompleteRequest { ticket: water.ticket_number.clone(), unit: String::new(), result: "done".into() })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    let wrong = p
        .desk_as("unit:city-ecology")
        .await
        .complete(pb::CompleteRequest { ticket: water.ticket_number.clone(), unit: "city-ecology".into(), result: "done".into() })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::PermissionDenied, "{wrong:?}");
    assert!(wrong.message().contains("only the unit the ticket is assigned to"), "{}", wrong.message());
    let posing = desk
        .complete(pb::CompleteRequest { ticket: water.ticket_number.clone(), unit: "city-ecology".into(), result: "done".into() })
        .await
        .unwrap_err();
    assert_eq!(posing.code(), Code::PermissionDenied, "a unit's token cannot speak for another unit");
    let desk_op = p
        .desk_as("city")
        .await
        .complete(pb::CompleteRequest { ticket: water.ticket_number.clone(), unit: String::new(), result: "done".into() })
        .await
        .unwrap_err();
    assert_eq!(desk_op.code(), Code::PermissionDenied, "completion is the unit's, not the platform desk's");
    let missing = desk
        .complete(pb::CompleteRequest { ticket: "20990101000001".into(), unit: "city-water".into(), result: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let empty = desk
        .complete(pb::CompleteRequest { ticket: water.ticket_number.clone(), unit: "city-water".into(), result: " ".into() })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(empty.message().contains("result"), "{}", empty.message());
    desk.complete(pb::CompleteRequest {
        ticket: water.ticket_number.clone(), unit: "city-water".into(), result: "已更换破损水管".into()
    })
    .await
    .expect("complete");
    let v = p.wait_ticket(&water.ticket_number, WAIT, |v| v.state == "completed").await;
    assert_eq!(v.result, "已更换破损水管");
    let again = desk
        .complete(pb::CompleteRequest { ticket: water.ticket_number.clone(), unit: "city-water".into(), result: "again".into() })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    let done = p.sms.wait_for(1, WAIT, is("ticket_completed", &water.ticket_number)).await;
    assert!(done[0]["text"].as_str().unwrap().contains("已更换破损水管"));
    // Each party exactly once, even though every consumer commits in batches.
    assert_eq!(p.sms.messages(is("ticket_received", &water.ticket_number)).len(), 1);
    assert_eq!(p.webhook.messages(is("ticket_assigned", &water.ticket_number)).len(), 1);
    assert_eq!(p.sms.messages(is("ticket_completed", &water.ticket_number)).len(), 1);
    // Units never see the phone in clear in anything they get, and the
    // webhook never carries it.
    assert!(p.webhook.messages(|_| true).iter().all(|m| !m.to_string().contains("13800138000")));

    // The record on Kafka is the whole story, in order.
    let names: Vec<&str> = p.events_for(&water.ticket_id).await.iter().map(|e| e.kind.name()).collect();
    assert_eq!(names, ["received", "classified", "dispatched", "completed"]);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overdue_reminder_fires_once_and_completion_cancels_it() {
    let p = Platform::start("overdue").await;
    let late = submit(&p, request("小区停水，没人管", "海淀区中关村")).await;
    let early = submit(&p, request("水管漏水", "海淀区学院路")).await;
    let late_view = assigned(&p, &late.ticket_number).await;
    assigned(&p, &early.ticket_number).await;

    p.desk_as("unit:city-water")
        .await
        .complete(pb::CompleteRequest { ticket: early.ticket_number.clone(), unit: "city-water".into(), result: "修好了".into() })
        .await
        .expect("complete");
    p.wait_ticket(&early.ticket_number, WAIT, |v| v.state == "completed").await;
    p.wait_timers(&early.ticket_id, 0, WAIT).await; // completion cancels the timers
    p.wait_timers(&late.ticket_id, 3, WAIT).await; // warning, first and second overdue armed

    // Past the deadline: the late ticket is reminded.
    p.clock.set(china(&late_view.deadline) + time::Duration::minutes(1));
    let v = p.wait_ticket(&late.ticket_number, WAIT, |v| v.overdue_level == 1).await;
    assert!(!v.supervised);
    let reminders = p.webhook.wait_for(1, WAIT, is("overdue_reminder", &late.ticket_number)).await;
    assert_eq!(reminders[0]["recipient"]["unit"], "city-water");

    // Past the second overdue: urging letter, supervised. The first reminder
    // did not fire again meanwhile.
    p.clock.set(china(&late_view.deadline) + time::Duration::days(8));
    let v = p.wait_ticket(&late.ticket_number, WAIT, |v| v.overdue_level == 2).await;
    assert!(v.supervised);
    p.webhook.wait_for(1, WAIT, is("urging_letter", &late.ticket_number)).await;
    let events = p.events_for(&late.ticket_id).await;
    assert_eq!(overdue_events(&events, OverdueLevel::First), 1);
    assert_eq!(overdue_events(&events, OverdueLevel::Second), 1);
    assert_eq!(p.webhook.messages(is("overdue_reminder", &late.ticket_number)).len(), 1);

    // The completed ticket never fired.
    let events = p.events_for(&early.ticket_id).await;
    assert_eq!(overdue_events(&events, OverdueLevel::First) + overdue_events(&events, OverdueLevel::Second), 0);
    assert!(p.webhook.messages(is("overdue_reminder", &early.ticket_number)).is_empty());
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_survives_the_sla_timer_being_killed_between_arm_and_due() {
    let mut p = Platform::start("restart").await;
    let t = submit(&p, request("暖气不热", "东城区安定门")).await;
    let v = assigned(&p, &t.ticket_number).await;
    p.wait_timers(&t.ticket_id, 3, WAIT).await;

    p.kill("sla-timer").await;
    p.start_sla_timer().await;

    p.clock.set(china(&v.deadline) + time::Duration::minutes(1));
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.overdue_level == 1).await;
    p.clock.set(china(&v.deadline) + time::Duration::days(8));
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.overdue_level == 2).await;
    let events = p.events_for(&t.ticket_id).await;
    assert_eq!(overdue_events(&events, OverdueLevel::First), 1, "fired once");
    assert_eq!(p.webhook.wait_for(1, WAIT, is("overdue_reminder", &t.ticket_number)).await.len(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_the_same_request_returns_the_same_number() {
    let p = Platform::start("resubmit").await;
    let mut req = request("家里自来水发黄，还有股铁锈味", "西城区金融街");
    req.channel = "app".into();
    req.external_id = "app-778899".into();
    let first = submit(&p, req.clone()).await;
    let mut handles = Vec::new();
    for _ in 0..4 {
        let mut c = p.intake().await;
        let r = req.clone();
        handles.push(tokio::spawn(async move { c.submit_request(r).await.expect("resubmit").into_inner() }));
    }
    for h in handles {
        let again = h.await.unwrap();
        assert_eq!(again.ticket_number, first.ticket_number);
        assert_eq!(again.ticket_id, first.ticket_id);
        assert!(again.duplicate);
    }
    // The same external id on another channel is another request.
    req.channel = "web".into();
    let other = submit(&p, req).await;
    assert_ne!(other.ticket_number, first.ticket_number);

    assigned(&p, &first.ticket_number).await;
    let received = p.events_for(&first.ticket_id).await.iter().filter(|e| e.kind.name() == "received").count();
    assert_eq!(received, 1, "one ticket, one received event");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_naming_the_field() {
    let p = Platform::start("invalid").await;
    let mut c = p.intake().await;
    let cases: Vec<(&str, Mutation)> = vec![
        ("text", Box::new(|r| r.text = "   ".into())),
        ("text", Box::new(|r| r.text = "水".repeat(4001))),
        ("lat", Box::new(|r| (r.lat, r.lon) = (Some(95.0), Some(116.0)))),
        ("lon", Box::new(|r| (r.lat, r.lon) = (Some(39.9), Some(200.0)))),
        ("lon", Box::new(|r| r.lat = Some(39.9))),
        ("channel", Box::new(|r| r.channel = "carrier-pigeon".into())),
        ("citizen_phone", Box::new(|r| r.citizen_phone = "call me maybe".into())),
        ("citizen_phone", Box::new(|r| r.citizen_phone = "12345".into())),
        ("citizen_email", Box::new(|r| r.citizen_email = "not-an-email".into())),
        ("language", Box::new(|r| r.language = "fr".into())),
    ];
    for (field, mutate) in cases {
        let mut r = request("楼道灯坏了", "东城区");
        mutate(&mut r);
        let err = c.submit_request(r).await.expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().starts_with(field), "{field}: {}", err.message());
        assert_eq!(err.metadata().get("x-whistle-field").and_then(|v| v.to_str().ok()), Some(field));
    }
    let unknown = c.get_ticket(pb::GetTicketRequest { ticket: "20990101000001".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_and_the_next_one_still_flows() {
    let p = Platform::start("poison").await;
    let garbage = b"\x08\x96\x01 this is not a ticket event \xff\xfe";
    p.publish_raw("not-a-ticket", garbage).await;
    let t = submit(&p, request("公交站牌损坏", "海淀区中关村")).await;
    let v = assigned(&p, &t.ticket_number).await;
    assert_eq!(v.unit, "city-transport");

    let events_topic = p.topics().events();
    let dead = p.wait_dead_letters(7, WAIT, |m| m.payload == garbage).await;
    // Every consumer group (projector, classifier, dispatcher, sla-timer,
    // notifier, revisit, revisit-figures) set it aside with its reason.
    assert_eq!(dead.len(), 7, "{dead:#?}");
    let services: std::collections::BTreeSet<&str> = dead.iter().filter_map(|d| d.headers.get("dlq-service").map(String::as_str)).collect();
    assert_eq!(services.len(), 7, "{services:?}");
    for d in &dead {
        assert_eq!(d.headers.get("dlq-topic"), Some(&events_topic));
        let reason = d.headers.get("dlq-reason").cloned().unwrap_or_default();
        assert!(reason.contains("TicketEvent"), "{reason}");
        assert!(d.headers.contains_key("dlq-offset"));
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_is_retried_and_a_refused_message_is_dead_lettered() {
    let p = Platform::start_with("webhook", Options { webhook: Behaviour::FailFirst(3), ..Options::default() }).await;
    let t = submit(&p, request("家里停电了", "东城区景山")).await;
    let got = p.webhook.wait_for(1, WAIT, is("ticket_assigned", &t.ticket_number)).await;
    assert_eq!(got.len(), 1);
    assert!(p.webhook.failed() >= 3);
    assert_eq!(p.webhook.messages(is("ticket_assigned", &t.ticket_number)).len(), 1);

    // Now the endpoint refuses what it is sent: the message is dead-lettered
    // with the reason, and the consumer moves on.
    p.webhook.set_behaviour(Behaviour::Reject);
    let t2 = submit(&p, request("又停电了", "东城区景山")).await;
    let dead = p.wait_dead_letters(1, WAIT, |m| m.headers.get("dlq-service").map(String::as_str) == Some("notifier")).await;
    assert!(!dead.is_empty());
    let reason = &dead[0].headers["dlq-reason"];
    assert!(reason.contains("ticket_assigned") && reason.contains("400") && reason.contains("refused"), "{reason}");
    assert!(!reason.contains("13800138000"), "no phone in the reason: {reason}");
    assigned(&p, &t2.ticket_number).await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ticket_is_one_trace_across_services() {
    let p = Platform::start("trace").await;
    let t = submit(&p, request("自来水发黄，烧开以后有很多水垢", "西城区金融街")).await;
    let v = assigned(&p, &t.ticket_number).await;
    p.wait_timers(&t.ticket_id, 3, WAIT).await;
    p.clock.set(china(&v.deadline) + time::Duration::minutes(1));
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.overdue_level == 1).await;
    let raw = p.read_topic(&p.topics().events()).await;
    let mut traces: Vec<(String, String)> = Vec::new();
    for m in raw.iter().filter(|m| m.key.as_deref() == Some(t.ticket_id.as_bytes())) {
        let kind = m.headers.get("event-type").cloned().unwrap_or_default();
        let tp = m.headers.get("traceparent").unwrap_or_else(|| panic!("{kind} has no traceparent"));
        // 00-<trace id>-<span id>-<flags>
        let trace_id = tp.split('-').nth(1).expect("trace id").to_owned();
        traces.push((kind, trace_id));
    }
    let kinds: Vec<&str> = traces.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["received", "classified", "dispatched", "deadline_warning", "overdue"]);
    assert!(traces.iter().all(|(_, id)| *id == traces[0].1 && id.len() == 32 && id != &"0".repeat(32)), "{traces:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_systems_publish_into_the_intake_topic() {
    let p = Platform::start("topic").await;
    let topic = p.topics().intake_requests();
    let good = r#"{"channel":"grid","external_id":"grid-2026-0042","text":"路边消防栓漏水","address":"海淀区学院路","citizen_phone":"13912345678"}"#;
    let bad = r#"{"channel":"grid","external_id":"grid-2026-0043","text":"","address":"海淀区"}"#;
    p.publish_to(&topic, "grid-2026-0043", bad.as_bytes()).await;
    p.publish_to(&topic, "grid-2026-0042", good.as_bytes()).await;
    // Redelivery or a second publish of the same request registers nothing new.
    p.publish_to(&topic, "grid-2026-0042", good.as_bytes()).await;

    let c = p.intake().await;
    let v = whistle_tests::eventually("the published request as a ticket", WAIT, Duration::from_millis(25), || {
        let mut c = c.clone();
        async move {
            let by = pb::GetTicketRequest { channel: "grid".into(), external_id: "grid-2026-0042".into(), ..Default::default() };
            c.get_ticket(by).await.map(|v| v.into_inner()).map_err(|s| s.to_string())
        }
    })
    .await;
    let v = assigned(&p, &v.ticket_number).await;
    assert_eq!((v.channel.as_str(), v.unit.as_str()), ("grid", "city-water"));
    let dead = p.wait_dead_letters(1, WAIT, |m| m.payload == bad.as_bytes()).await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].headers["dlq-reason"].contains("text: must not be empty"), "{:?}", dead[0].headers);

    let received = p.events_for(&v.ticket_id).await.iter().filter(|e| e.kind.name() == "received").count();
    assert_eq!(received, 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_state_lost_from_redis_is_rebuilt_from_kafka() {
    let p = Platform::start("projection").await;
    let mut req = request("水管漏水", "东城区景山");
    (req.channel, req.external_id) = ("app".into(), "app-42".into());
    let first = submit(&p, req.clone()).await;
    assigned(&p, &first.ticket_number).await;
    p.wipe_projection().await;

    // The projection comes back from the topic, numbers keep counting up,
    // and the old ticket still moves on.
    let v = assigned(&p, &first.ticket_number).await;
    assert_eq!(v.unit, "city-water");
    p.wait_queue("city", &first.ticket_number, Some("unacknowledged")).await;
    let again = submit(&p, req).await;
    assert_eq!((again.ticket_number.as_str(), again.duplicate), (first.ticket_number.as_str(), true), "resubmission still recognised");
    let second = submit(&p, request("又漏水了", "东城区景山")).await;
    assert!(second.ticket_number > first.ticket_number, "{} after {}", second.ticket_number, first.ticket_number);
    p.desk_as("unit:city-water")
        .await
        .complete(pb::CompleteRequest { ticket: first.ticket_number.clone(), unit: String::new(), result: "修好了".into() })
        .await
        .expect("complete after the rebuild");
    p.wait_ticket(&first.ticket_number, WAIT, |v| v.state == "completed").await;
    assert_eq!(p.sms.wait_for(1, WAIT, is("ticket_completed", &first.ticket_number)).await.len(), 1);
    p.shutdown().await;
}
