//! The desk API on the real broker and Redis: acknowledge, return within the
//! window, re-dispatch, extensions, supervision and the audit trail, each
//! authorized by the caller's token.

use std::time::Duration;
use tonic::Code;
use whistle_proto::v1 as pb;
use whistle_tests::{Platform, request};

const WAIT: Duration = Duration::from_secs(60);

fn china(t: &Option<whistle_proto::prost_types::Timestamp>) -> time::OffsetDateTime {
    whistle_proto::to_datetime(t.as_ref().expect("timestamp")).unwrap().to_offset(time::macros::offset!(+8))
}

fn ts(t: time::OffsetDateTime) -> Option<whistle_proto::prost_types::Timestamp> {
    Some(whistle_proto::timestamp(t))
}

async fn water_ticket(p: &Platform) -> pb::TicketView {
    let t = p.intake().await.submit_request(request("水管漏水", "东城区景山")).await.expect("submit").into_inner();
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await
}

fn tref(v: &pb::TicketView) -> pb::TicketRef {
    pb::TicketRef { ticket: v.ticket_number.clone() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_ticket_goes_back_to_the_platform_and_is_redispatched_with_a_full_audit_trail() {
    let p = Platform::start("return").await;
    let v = water_ticket(&p).await;
    let mut water = p.desk_as("unit:city-water").await;
    let mut city = p.desk_as("city").await;

    water.acknowledge(tref(&v)).await.expect("acknowledge");
    p.wait_ticket(&v.ticket_number, WAIT, |v| v.state == "acknowledged").await;
    let empty = water.r#return(pb::ReasonRequest { ticket: v.ticket_number.clone(), reason: " ".into() }).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(empty.message().starts_with("reason"), "{}", empty.message());
    water.r#return(pb::ReasonRequest { ticket: v.ticket_number.clone(), reason: "小区内管道归物业".into() }).await.expect("return");
    let back = p.wait_ticket(&v.ticket_number, WAIT, |v| v.state == "queued").await;
    assert_eq!(back.platform, "city");
    // The city desk is told, with the unit and its reason.
    let told = p.webhook.wait_for(1, WAIT, whistle_tests::webhook::is("desk_returned", &v.ticket_number)).await;
    assert_eq!(told[0]["recipient"]["platform"], "city");
    let text = told[0]["text"].as_str().unwrap();
    assert!(text.contains("city-water") && text.contains("小区内管道归物业"), "{text}");
    p.wait_timers(&v.ticket_id, 0, WAIT).await; // a returned ticket has no running deadline

    let foreign =
        city.dispatch(pb::DispatchRequest { ticket: v.ticket_number.clone(), unit: "dongcheng-environment".into() }).await.unwrap_err();
    assert_eq!(foreign.code(), Code::InvalidArgument, "{foreign:?}");
    assert!(foreign.message().contains("belongs to platform county:dongcheng"), "{}", foreign.message());
    city.dispatch(pb::DispatchRequest { ticket: v.ticket_number.clone(), unit: "city-housing".into() }).await.expect("re-dispatch");
    let again = p.wait_ticket(&v.ticket_number, WAIT, |v| v.state == "assigned").await;
    assert_eq!(again.unit, "city-housing");

    let history = p.desk_as("unit:city-housing").await.history(tref(&v)).await.expect("history").into_inner();
    let trail: Vec<(String, String, String)> =
        history.entries.iter().map(|e| (e.event.clone(), e.actor_kind.clone(), e.actor_id.clone())).collect();
    let expect = [
        ("received", "system", "intake:phone"),
        ("classified", "system", "classifier"),
        ("dispatched", "system", "dispatcher:city"),
        ("acknowledged", "unit", "city-water"),
        ("returned", "unit", "city-water"),
        ("dispatched", "operator", "desk:city"),
    ];
    let got: Vec<(&str, &str, &str)> = trail.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    assert_eq!(got, expect);
    // The unit that returned it no longer reads it.
    assert_eq!(water.history(tref(&v)).await.unwrap_err().code(), Code::PermissionDenied);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_return_after_the_window_is_refused_and_wrong_callers_are_denied() {
    let p = Platform::start("window").await;
    let v = water_ticket(&p).await;
    let mut water = p.desk_as("unit:city-water").await;
    for (who, code) in [("unit:city-ecology", Code::PermissionDenied), ("city", Code::PermissionDenied)] {
        let e = p.desk_as(who).await.acknowledge(tref(&v)).await.unwrap_err();
        assert_eq!(e.code(), code, "{who}: {e:?}");
    }
    let e = water.dispatch(pb::DispatchRequest { ticket: v.ticket_number.clone(), unit: "city-water".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "a unit does not dispatch");
    assert_eq!(p.desk_with_token(Some("forged")).await.acknowledge(tref(&v)).await.unwrap_err().code(), Code::Unauthenticated);

    // Monday 10:00 + 2 working days: Wednesday 10:00.
    p.clock.set(time::macros::datetime!(2026-11-25 10:01 +08:00));
    let late = water.r#return(pb::ReasonRequest { ticket: v.ticket_number.clone(), reason: "不归我们管".into() }).await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert!(late.message().contains("return window (2wd) closed"), "{}", late.message());
    assert_eq!(p.wait_ticket(&v.ticket_number, WAIT, |v| v.state == "assigned").await.unit, "city-water");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_granted_moves_the_deadline_and_a_refused_one_leaves_it() {
    let p = Platform::start("extend").await;
    let v = water_ticket(&p).await;
    let old = china(&v.deadline);
    let mut water = p.desk_as("unit:city-water").await;
    let mut city = p.desk_as("city").await;
    let ask = |days: i64| pb::ExtensionRequest {
        ticket: v.ticket_number.clone(),
        reason: "需要更换主管道".into(),
        requested_due_at: ts(old + time::Duration::days(days)),
    };

    water.request_extension(ask(3)).await.expect("request");
    let too_far = city
        .decide_extension(pb::ExtensionDecision {
            ticket: v.ticket_number.clone(),
            grant: true,
            due_at: ts(old + time::Duration::days(30)),
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(too_far.code(), Code::InvalidArgument);
    assert!(too_far.message().starts_with("due_at"), "{}", too_far.message());
    city.decide_extension(pb::ExtensionDecision {
        ticket: v.ticket_number.clone(),
        grant: true,
        due_at: ts(old + time::Duration::days(3)),
        note: "同意".into(),
    })
    .await
    .expect("grant");
    let moved = p.wait_ticket(&v.ticket_number, WAIT, |x| china(&x.deadline) != old).await;
    assert_eq!(china(&moved.deadline), old + time::Duration::days(3));

    water.request_extension(ask(6)).await.expect("second request");
    city.decide_extension(pb::ExtensionDecision { ticket: v.ticket_number.clone(), grant: false, due_at: None, note: "不同意".into() })
        .await
        .expect("refuse");
    let h = city.history(tref(&v)).await.expect("history").into_inner();
    assert_eq!(h.entries.last().map(|e| e.event.as_str()), Some("extension_decided"));
    let after = p.wait_ticket(&v.ticket_number, WAIT, |x| x.state == "assigned").await;
    assert_eq!(china(&after.deadline), old + time::Duration::days(3), "refusal leaves the deadline");

    let no_request = city
        .decide_extension(pb::ExtensionDecision { ticket: v.ticket_number.clone(), grant: false, due_at: None, note: String::new() })
        .await
        .unwrap_err();
    assert_eq!(no_request.code(), Code::FailedPrecondition, "nothing pending: {no_request:?}");

    city.supervise(pb::ReasonRequest { ticket: v.ticket_number.clone(), reason: "群众反映强烈".into() }).await.expect("supervise");
    assert!(p.wait_ticket(&v.ticket_number, WAIT, |x| x.supervised).await.supervised);
    p.shutdown().await;
}
