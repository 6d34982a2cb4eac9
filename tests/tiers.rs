//! Three tiers on the real broker and Redis: a street's ticket stays on that
//! street's desk, the street whistles, the district assigns its bureau, the
//! bureau completes, and the whole trail is readable in order.

use std::time::Duration;
use tonic::Code;
use whistle_proto::v1 as pb;
use whistle_tests::webhook::is;
use whistle_tests::{Options, Platform, request};

const WAIT: Duration = Duration::from_secs(60);
const STREET: &str = "street:xc-xinjiekou";
const COUNTY: &str = "county:xicheng";

fn tref(n: &str) -> pb::TicketRef {
    pb::TicketRef { ticket: n.to_owned() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_street_whistles_and_the_district_bureau_reports_in_and_completes() {
    let p = Platform::start_with("tiers", Options { platforms: vec![STREET, "street:xc-jinrongjie", COUNTY], ..Options::default() }).await;
    let t = p.intake().await.submit_request(request("晚上施工噪音扰民", "西城区新街口")).await.expect("submit").into_inner();

    // The noise complaint goes to street S's desk and its office, nowhere else.
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    assert_eq!((v.platform.as_str(), v.unit.as_str()), (STREET, "xc-xinjiekou-office"));
    let other = p.desk_at("street:xc-jinrongjie", "street:xc-jinrongjie").await.history(tref(&t.ticket_number)).await.unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied, "another street never reads it: {other:?}");
    let county_early = p.desk_at(COUNTY, COUNTY).await.history(tref(&t.ticket_number)).await.unwrap_err();
    assert_eq!(county_early.code(), Code::PermissionDenied, "the district sees it only once it is whistled in");
    p.desk_at("city", "city").await.history(tref(&t.ticket_number)).await.expect("the city sees everything");
    let other = p.desk_at("street:xc-jinrongjie", "street:xc-jinrongjie").await.get(tref(&t.ticket_number)).await.unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied, "nor reads it whole: {other:?}");

    // Until the office acknowledges it, it waits on S's desk, which may whistle it.
    p.wait_queue(STREET, &t.ticket_number, Some("unacknowledged")).await;
    let seen = p.desk_at(STREET, STREET).await.get(tref(&t.ticket_number)).await.expect("S reads it").into_inner();
    assert_eq!(seen.actions, ["dispatch", "whistle", "supervise"], "re-dispatch, whistle or supervise; no reclassifying in a unit's hands");
    assert_eq!(seen.phone_masked, "138****8000", "the phone as notifications mask it");
    let me = p.desk_at(COUNTY, "unit:xicheng-environment").await.who_am_i(pb::WhoAmIRequest {}).await.expect("who am i").into_inner();
    assert_eq!((me.kind.as_str(), me.id.as_str(), me.platform.as_str()), ("unit", "xicheng-environment", COUNTY));

    // S whistles: the district's desk holds it; S still sees it but no longer acts.
    let mut street = p.desk_at(STREET, STREET).await;
    street
        .whistle(pb::ReasonRequest { ticket: t.ticket_number.clone(), reason: "施工方属区级项目，需区生态环境局".into() })
        .await
        .expect("whistle");
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "queued").await;
    assert_eq!(v.platform, COUNTY);
    street.history(tref(&t.ticket_number)).await.expect("S still reads it");
    p.wait_queue(COUNTY, &t.ticket_number, Some("whistled")).await;
    p.wait_queue(STREET, &t.ticket_number, None).await;
    assert!(street.get(tref(&t.ticket_number)).await.expect("S reads it").into_inner().actions.is_empty(), "S no longer acts");
    let e = street.dispatch(pb::DispatchRequest { ticket: t.ticket_number.clone(), unit: "xc-xinjiekou-office".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // The district assigns its environment bureau; the bureau reports in and completes.
    let mut county = p.desk_at(COUNTY, COUNTY).await;
    county
        .dispatch(pb::DispatchRequest { ticket: t.ticket_number.clone(), unit: "xicheng-environment".into() })
        .await
        .expect("county dispatch");
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    assert_eq!((v.platform.as_str(), v.unit.as_str()), (COUNTY, "xicheng-environment"));
    let mut bureau = p.desk_at(COUNTY, "unit:xicheng-environment").await;
    let offered = bureau.get(tref(&t.ticket_number)).await.expect("the bureau reads it").into_inner().actions;
    assert_eq!(offered, ["acknowledge", "return", "request_extension", "complete", "report_in"]);
    bureau.acknowledge(tref(&t.ticket_number)).await.expect("acknowledge");
    p.wait_queue(COUNTY, &t.ticket_number, None).await;
    // Another district department reports in to take its part; a street unit cannot.
    p.desk_at(COUNTY, "unit:xicheng-city-management").await.report_in(tref(&t.ticket_number)).await.expect("report in");
    let e = p.desk_at(COUNTY, "unit:xc-xinjiekou-office").await.report_in(tref(&t.ticket_number)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    bureau
        .complete(pb::CompleteRequest { ticket: t.ticket_number.clone(), unit: String::new(), result: "已责令夜间停工".into() })
        .await
        .expect("complete");
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "completed").await;

    // The citizen and street S are told.
    assert_eq!(p.sms.wait_for(1, WAIT, is("ticket_completed", &t.ticket_number)).await.len(), 1, "the citizen");
    let told = p.webhook.wait_for(1, WAIT, is("desk_completed", &t.ticket_number)).await;
    assert_eq!(told[0]["recipient"]["platform"], "street:xc-xinjiekou");

    // The trail, in order, with actors.
    let h = p.desk_at(COUNTY, COUNTY).await.history(tref(&t.ticket_number)).await.expect("history").into_inner();
    let got: Vec<(String, String)> = h.entries.iter().map(|e| (e.event.clone(), format!("{}:{}", e.actor_kind, e.actor_id))).collect();
    let want = [
        ("received", "system:intake:phone"),
        ("classified", "system:classifier"),
        ("delegated", "system:dispatcher:city"),
        ("dispatched", "system:dispatcher:street:xc-xinjiekou"),
        ("whistled", "operator:desk:street:xc-xinjiekou"),
        ("dispatched", "operator:desk:county:xicheng"),
        ("acknowledged", "unit:xicheng-environment"),
        ("reported_in", "unit:xicheng-city-management"),
        ("completed", "unit:xicheng-environment"),
    ];
    let got: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, want);
    p.shutdown().await;
}

async fn next(stream: &mut tonic::Streaming<pb::QueueItem>) -> pb::QueueItem {
    tokio::time::timeout(WAIT, stream.message()).await.expect("a queue item in time").expect("stream").expect("open stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_street_desk_watches_its_queue_and_a_returned_ticket_comes_back_with_its_reason() {
    let p = Platform::start_with("queue", Options { platforms: vec![STREET, COUNTY], ..Options::default() }).await;
    let mut street = p.desk_at(STREET, STREET).await;
    let denied = p.desk_at(STREET, "street:xc-jinrongjie").await.watch(pb::WatchRequest {}).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let mut queue = street.watch(pb::WatchRequest {}).await.expect("watch").into_inner();

    let t = p.intake().await.submit_request(request("晚上施工噪音扰民", "西城区新街口")).await.expect("submit").into_inner();
    let first = next(&mut queue).await;
    assert_eq!((first.event.as_str(), first.from.as_str()), ("delegated", "city"));
    let second = next(&mut queue).await;
    assert_eq!((second.event.as_str(), second.from.as_str()), ("dispatched", "xc-xinjiekou-office"));
    assert_eq!(second.ticket_id, t.ticket_id);
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;

    // The office returns it: it is back on the street's queue, with the reason.
    p.desk_at(STREET, "unit:xc-xinjiekou-office")
        .await
        .r#return(pb::ReasonRequest { ticket: t.ticket_number.clone(), reason: "工地在金融街辖区".into() })
        .await
        .expect("return");
    let back = next(&mut queue).await;
    assert_eq!((back.event.as_str(), back.reason.as_str(), back.from.as_str()), ("returned", "工地在金融街辖区", "xc-xinjiekou-office"));
    street
        .dispatch(pb::DispatchRequest { ticket: t.ticket_number.clone(), unit: "xc-xinjiekou-community-1".into() })
        .await
        .expect("re-dispatch");
    let again = next(&mut queue).await;
    assert_eq!((again.event.as_str(), again.from.as_str()), ("dispatched", "xc-xinjiekou-community-1"));

    // Whistled up, then handed back down by the district: street -> county -> street.
    street.whistle(pb::ReasonRequest { ticket: t.ticket_number.clone(), reason: "需要区里协调".into() }).await.expect("whistle");
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.platform == COUNTY).await;
    let mut county = p.desk_at(COUNTY, COUNTY).await;
    let wrong = county
        .delegate(pb::DelegateRequest { ticket: t.ticket_number.clone(), platform: "street:hd-zhongguancun".into(), reason: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::InvalidArgument, "not one of Xicheng's streets: {wrong:?}");
    county
        .delegate(pb::DelegateRequest {
            ticket: t.ticket_number.clone(),
            platform: STREET.into(),
            reason: "已协调施工方，请街道跟进".into(),
        })
        .await
        .expect("delegate back");
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned" && v.platform == STREET).await;
    assert_eq!(v.unit, "xc-xinjiekou-office");
    let h = county.history(tref(&t.ticket_number)).await.expect("the county still reads it").into_inner();
    let trail: Vec<String> = h.entries.iter().map(|e| format!("{} by {}:{}", e.event, e.actor_kind, e.actor_id)).collect();
    assert_eq!(
        trail,
        [
            "received by system:intake:phone",
            "classified by system:classifier",
            "delegated by system:dispatcher:city",
            "dispatched by system:dispatcher:street:xc-xinjiekou",
            "returned by unit:xc-xinjiekou-office",
            "dispatched by operator:desk:street:xc-xinjiekou",
            "whistled by operator:desk:street:xc-xinjiekou",
            "delegated by operator:desk:county:xicheng",
            "dispatched by system:dispatcher:street:xc-xinjiekou",
        ]
    );
    let times: Vec<(i64, i32)> = h.entries.iter().map(|e| e.at.as_ref().map_or((0, 0), |t| (t.seconds, t.nanos))).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order: {times:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_with_a_token_from_the_wrong_street_county_or_unit_is_denied_and_changes_nothing() {
    let p = Platform::start_with("denied", Options { platforms: vec![STREET, "street:xc-jinrongjie", COUNTY], ..Options::default() }).await;
    let t = p.intake().await.submit_request(request("晚上施工噪音扰民", "西城区新街口")).await.expect("submit").into_inner();
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned" && v.platform == STREET).await;
    let before = p.desk_at("city", "city").await.history(tref(&t.ticket_number)).await.expect("history").into_inner().entries.len();
    let n = t.ticket_number.clone();
    let due = Some(whistle_proto::timestamp(time::macros::datetime!(2026-12-20 10:00 +08:00)));

    // Each wrong caller, at the desk of the street that holds the ticket.
    for caller in ["street:xc-jinrongjie", COUNTY, "unit:city-ecology", "unit:xicheng-environment"] {
        let mut d = p.desk_at(STREET, caller).await;
        let calls: Vec<(&str, Result<(), tonic::Status>)> = vec![
            ("acknowledge", d.acknowledge(tref(&n)).await.map(drop)),
            ("return", d.r#return(pb::ReasonRequest { ticket: n.clone(), reason: "x".into() }).await.map(drop)),
            ("dispatch", d.dispatch(pb::DispatchRequest { ticket: n.clone(), unit: "xc-xinjiekou-office".into() }).await.map(drop)),
            (
                "delegate",
                d.delegate(pb::DelegateRequest { ticket: n.clone(), platform: "street:xc-xinjiekou".into(), reason: "x".into() })
                    .await
                    .map(drop),
            ),
            ("whistle", d.whistle(pb::ReasonRequest { ticket: n.clone(), reason: "x".into() }).await.map(drop)),
            ("report in", d.report_in(tref(&n)).await.map(drop)),
            (
                "request extension",
                d.request_extension(pb::ExtensionRequest { ticket: n.clone(), reason: "x".into(), requested_due_at: due }).await.map(drop),
            ),
            (
                "decide extension",
                d.decide_extension(pb::ExtensionDecision { ticket: n.clone(), grant: false, due_at: None, note: String::new() })
                    .await
                    .map(drop),
            ),
            ("supervise", d.supervise(pb::ReasonRequest { ticket: n.clone(), reason: "x".into() }).await.map(drop)),
            ("complete", d.complete(pb::CompleteRequest { ticket: n.clone(), unit: String::new(), result: "x".into() }).await.map(drop)),
            ("history", d.history(tref(&n)).await.map(drop)),
            ("watch", d.watch(pb::WatchRequest {}).await.map(drop)),
        ];
        for (action, r) in calls {
            assert_eq!(r.err().map(|e| e.code()), Some(Code::PermissionDenied), "{caller} {action}");
        }
    }
    let after = p.desk_at("city", "city").await.history(tref(&t.ticket_number)).await.expect("history").into_inner().entries.len();
    assert_eq!(after, before, "nothing changed");
    p.shutdown().await;
}
