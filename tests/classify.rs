//! The classifier in the real pipeline (broker, Redis, every service):
//! requests in five languages reach the right unit and platform, danger
//! gets the urgent deadline, a third report of one problem at one address
//! is a key whistle (also after Redis lost the history), an unsure request
//! waits on the city's triage queue until a desk reclassifies it, and bad
//! input gets a clear answer.

use std::collections::BTreeMap;
use std::time::Duration;
use tonic::Code;
use whistle_proto::v1 as pb;
use whistle_tests::webhook::is;
use whistle_tests::{Options, Platform, request};

const WAIT: Duration = Duration::from_secs(60);

/// The platforms the routing test's requests reach.
const PLATFORMS: &[&str] = &["street:xc-xinjiekou", "street:cy-wangjing", "street:hd-zhongguancun", "street:dc-jingshan", "county:xicheng"];

fn tref(n: &str) -> pb::TicketRef {
    pb::TicketRef { ticket: n.to_owned() }
}

#[derive(serde::Deserialize)]
struct Case {
    id: String,
    text: String,
    address: String,
    language: String,
    platform: String,
    unit: String,
    urgency: String,
}

fn cases() -> Vec<Case> {
    let file = whistle_tests::repo_root().join("tests/data/routing.jsonl");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_five_languages_reach_the_right_unit_and_platform() {
    let p = Platform::start_with("routing", Options { platforms: PLATFORMS.to_vec(), ..Options::default() }).await;
    let cases = cases();
    let mut intake = p.intake().await;
    let mut numbers = Vec::new();
    for c in &cases {
        let mut r = request(&c.text, &c.address);
        r.language = c.language.clone();
        r.external_id = c.id.clone();
        numbers.push(intake.submit_request(r).await.unwrap_or_else(|e| panic!("{}: {e}", c.id)).into_inner().ticket_number);
    }
    // Every ticket either is dispatched to a unit or waits on a desk for a person.
    let mut wrong = Vec::new();
    let mut missed_urgent = Vec::new();
    let mut triaged = Vec::new();
    let mut per_language: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for (c, n) in cases.iter().zip(&numbers) {
        // Assigned to a unit, or waiting on a desk no automatic rule will
        // clear: the city's triage, or a platform the test does not run.
        let settled = |v: &pb::TicketView| {
            v.state == "assigned" || v.state == "queued" && (v.platform == "city" || !PLATFORMS.contains(&v.platform.as_str()))
        };
        let v = p.wait_ticket(n, WAIT, settled).await;
        let lang = c.id.split('-').next().unwrap_or("?").to_owned();
        let cell = per_language.entry(lang.clone()).or_default();
        cell.1 += 1;
        if v.state == "queued" && v.platform == "city" {
            triaged.push(format!("{}: waits for triage ({} {})", c.id, v.category, c.text));
            continue;
        }
        if (v.platform.as_str(), v.unit.as_str()) == (c.platform.as_str(), c.unit.as_str()) {
            cell.0 += 1;
        } else {
            wrong.push(format!("{}: {}/{} (want {}/{}) {}", c.id, v.platform, v.unit, c.platform, c.unit, c.text));
        }
        if c.urgency == "urgent" && v.urgency != "urgent" {
            missed_urgent.push(format!("{}: {} {}", c.id, v.urgency, c.text));
        }
        assert_eq!(v.language, lang, "{}: the ticket's language (said or told from the text)", c.id);
    }
    let summary: Vec<String> = per_language.iter().map(|(l, (ok, n))| format!("{l} {ok}/{n}")).collect();
    // The model is statistical: the bar is what a city would accept of a
    // trained agent, every miss printed.
    assert!(
        wrong.len() * 20 <= cases.len(),
        "{} of {} reached the wrong unit or platform ({}):\n{}",
        wrong.len(),
        cases.len(),
        summary.join(", "),
        wrong.join("\n")
    );
    assert!(missed_urgent.is_empty(), "urgent requests without the urgent deadline:\n{}", missed_urgent.join("\n"));
    assert!(triaged.len() * 20 <= cases.len(), "more than 5% waited for triage:\n{}", triaged.join("\n"));
    eprintln!("routing: {} ({} wrong, {} waiting for triage)\n{}", summary.join(", "), wrong.len(), triaged.len(), wrong.join("\n"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn danger_gets_the_urgent_deadline_whatever_the_rest_of_the_text_says() {
    let p = Platform::start("urgent").await;
    let mut intake = p.intake().await;
    // A property-fee complaint that mentions a gas smell in passing.
    let text = "物业费又涨了，一年比一年贵，服务还是那样。对了，这两天楼道里老有一股煤气味，晚上更明显。";
    let t = intake.submit_request(request(text, "东城区景山街道景山东街社区5号楼")).await.expect("submit").into_inner();
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    assert_eq!((v.category.as_str(), v.urgency.as_str(), v.unit.as_str()), ("gas", "urgent", "city-gas"));
    let due = whistle_proto::to_datetime(v.deadline.as_ref().expect("deadline")).expect("deadline time");
    assert_eq!(due, time::macros::datetime!(2026-11-23 12:00 +08:00), "urgent: 2 hours from 10:00");
    let why = p.events_for(&t.ticket_id).await;
    let classified = why.iter().find_map(|e| match &e.kind {
        whistle_domain::EventKind::Classified { matched_rules, .. } => Some(matched_rules.clone()),
        _ => None,
    });
    assert!(classified.expect("classified").iter().any(|m| m.starts_with("signal:gas-smell")), "the trail says why");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_third_report_of_a_problem_at_one_address_is_a_key_whistle_even_after_redis_lost_the_history() {
    let p = Platform::start("repeat").await;
    let mut intake = p.intake().await;
    let address = "西城区德胜门街道德外大街10号院";
    let texts = [
        "小区门口的垃圾堆了好几天了，没人清运，臭得不行",
        "门口的垃圾两天没人收了，麻烦来清一下",
        "门口那堆垃圾还在，苍蝇到处飞，麻烦派人清一下",
    ];
    let mut levels = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        if i == 2 {
            // Redis loses the history; the classifier rebuilds it from the topic.
            p.wipe_repeat_history().await;
            p.wait_key("repeat:alive", WAIT).await;
        }
        let t = intake.submit_request(request(text, address)).await.expect("submit").into_inner();
        let v = p.wait_ticket(&t.ticket_number, WAIT, |v| !v.whistle_level.is_empty()).await;
        assert_eq!(v.category, "city_management", "{text}");
        levels.push(v.whistle_level);
    }
    assert_eq!(levels, ["ordinary", "ordinary", "key"]);
    // Another kind of problem at the same address is a first report of its own.
    let t = intake.submit_request(request("院里有户人家天天晚上唱卡拉OK唱到半夜，吵得睡不着", address)).await.expect("submit").into_inner();
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| !v.whistle_level.is_empty()).await;
    assert_eq!((v.category.as_str(), v.whistle_level.as_str()), ("noise", "ordinary"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsure_request_waits_for_triage_and_reclassify_dispatches_it_with_the_correction_in_the_trail() {
    let p = Platform::start_with("triage", Options { platforms: vec!["street:xc-xinjiekou"], ..Options::default() }).await;
    let mut city = p.desk_at("city", "city").await;
    let mut queue = city.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    let t = p.intake().await.submit_request(request("@@@ ### 123 ...", "")).await.expect("submit").into_inner();

    let item = tokio::time::timeout(WAIT, queue.message()).await.expect("a queue item in time").expect("stream").expect("open stream");
    assert_eq!((item.event.as_str(), item.ticket_id.as_str()), ("triage", t.ticket_id.as_str()));
    assert!(item.reason.starts_with("confidence 0."), "{}", item.reason);
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "queued").await;
    assert_eq!(v.platform, "city", "it waits on the city desk");
    // Nobody dispatches it on their own: it is still waiting two seconds on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = p
        .intake()
        .await
        .get_ticket(pb::GetTicketRequest { ticket: t.ticket_number.clone(), ..Default::default() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!((still.state.as_str(), still.platform.as_str()), ("queued", "city"));

    // A street desk cannot touch it; a wrong correction is refused with the reason.
    let fix = |category: &str, street: &str| pb::ReclassifyRequest {
        ticket: t.ticket_number.clone(),
        category: category.into(),
        urgency: "urgent".into(),
        street: street.into(),
        reason: "市民补充：楼道水管爆裂".into(),
        ..Default::default()
    };
    let denied = p.desk_at("street:xc-xinjiekou", "street:xc-xinjiekou").await.reclassify(fix("water", "")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let bad = city.reclassify(fix("plumbing", "")).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("category"), "{}", bad.message());
    let bad = city.reclassify(fix("water", "xc-nowhere")).await.unwrap_err();
    assert!(bad.message().contains("unknown street"), "{}", bad.message());

    city.reclassify(fix("water", "dc-jingshan")).await.expect("reclassify");
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    assert_eq!((v.category.as_str(), v.urgency.as_str(), v.unit.as_str()), ("water", "urgent", "city-water"));
    assert_eq!(v.jurisdiction.as_ref().map(|j| (j.county.as_str(), j.street.as_str())), Some(("dongcheng", "dc-jingshan")));
    let h = city.history(tref(&t.ticket_number)).await.expect("history").into_inner();
    let trail: Vec<(String, String)> = h.entries.iter().map(|e| (e.event.clone(), format!("{}:{}", e.actor_kind, e.actor_id))).collect();
    let at = |event: &str| trail.iter().position(|(e, _)| e == event).unwrap_or_else(|| panic!("no {event} in {trail:?}"));
    assert_eq!(trail[at("reclassified")].1, "operator:desk:city");
    assert!(at("classified") < at("reclassified") && at("reclassified") < at("dispatched"), "{trail:?}");

    // The correction is training data for the next model.
    let kafka = p.kafka.clone();
    let corrections = whistle_classifier::training::corrections_from(&kafka).await.expect("corrections");
    assert_eq!(corrections.len(), 1);
    assert_eq!((corrections[0].text.as_str(), corrections[0].category.as_str()), ("@@@ ### 123 ...", "water"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_refusal_and_garbage_a_person() {
    let p = Platform::start("badinput").await;
    let mut intake = p.intake().await;
    for (text, language, field, says) in [
        ("   ", "zh", "text", "must not be empty"),
        (&*"漏".repeat(100_000), "zh", "text", "100000 characters; the limit is 4000"),
        ("fuite d'eau dans la cuisine", "fr", "language", "unsupported language"),
    ] {
        let mut r = request(text, "");
        r.language = language.into();
        let e = intake.submit_request(r).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}");
        assert!(e.message().contains(field) && e.message().contains(says), "{}", e.message());
    }
    // Binary garbage decoded as text is accepted and read: a person looks at it.
    let garbage: String = [0xff_u8, 0xfe, 0x00, 0x01, 0x80, 0x81, b'?', 0x7f].iter().map(|b| char::from(*b)).collect::<String>().repeat(40);
    let t = intake.submit_request(request(&garbage, "")).await.expect("garbage is a request").into_inner();
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "queued").await;
    assert_eq!(v.platform, "city");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_is_told_from_the_text_and_the_citizen_is_answered_in_it() {
    let p = Platform::start("language").await;
    let mut r = request("엘리베이터가 또 고장났어요. 관리사무소는 연락이 안 돼요.", "차오양구 왕징 화자디 5동");
    r.language = String::new();
    let t = p.intake().await.submit_request(r).await.expect("submit").into_inner();
    let sms = p.sms.wait_for(1, WAIT, is("ticket_received", &t.ticket_number)).await;
    assert_eq!(sms.len(), 1, "the received SMS");
    assert_eq!(sms[0]["language"], "ko");
    // A property matter starts at its street's desk.
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.platform == "street:cy-wangjing").await;
    assert_eq!((v.language.as_str(), v.category.as_str()), ("ko", "property"));
    p.shutdown().await;
}
