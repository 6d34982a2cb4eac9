//! The assessment figures, folded from the events: a scripted month of
//! tickets against hand-computed values; and the unit heads' monthly summary.

use std::collections::BTreeSet;
use std::time::Duration;
use time::OffsetDateTime;
use time::macros::datetime;
use whistle_domain::{
    Actor, Category, Contact, Deadline, Event, EventId, EventKind, Jurisdiction, Location, PlatformId, Request, Resolution, RevisitOutcome,
    TicketId, TicketNumber, UnitCode, Urgency, WhistleLevel,
};
use whistle_proto::v1 as pb;
use whistle_tests::webhook::is;
use whistle_tests::{Options, Platform, request};

const WAIT: Duration = Duration::from_secs(60);

struct Script<'a> {
    p: &'a Platform,
    seq: u32,
}

impl Script<'_> {
    async fn at(&self, t: TicketId, at: OffsetDateTime, kind: EventKind) {
        self.p.publish_event(&Event { id: EventId::new(), ticket_id: t, occurred_at: at, actor: Actor::system("script"), kind }).await;
    }

    async fn received(&mut self, at: OffsetDateTime) -> TicketId {
        self.seq += 1;
        let t = TicketId::new();
        let request =
            Request::parse("phone", "", "脚本工单", Location::default(), Contact::parse("", "13800000000", "").unwrap(), "zh").unwrap();
        let number = TicketNumber::parse(&format!("20261101{:06}", self.seq)).unwrap();
        self.at(t, at, EventKind::Received { number, request }).await;
        t
    }

    async fn dispatched(&self, t: TicketId, at: OffsetDateTime, platform: &str, unit: &str, due: OffsetDateTime) {
        let kind = EventKind::Dispatched {
            platform: PlatformId::parse(platform).unwrap(),
            unit: UnitCode::parse(unit).unwrap(),
            deadline: deadline(at, due),
            automatic: true,
        };
        self.at(t, at, kind).await;
    }

    async fn revisit(&self, t: TicketId, at: OffsetDateTime, outcome: RevisitOutcome) {
        self.at(t, at, EventKind::RevisitRecorded { outcome, reason: String::new() }).await;
    }
}

fn deadline(from: OffsetDateTime, due: OffsetDateTime) -> Deadline {
    Deadline { due_at: due, second_due_at: due + (due - from), warn_at: None, span: due - from, version: EventId::new() }
}

fn completed() -> EventKind {
    EventKind::Completed { result: "done".into() }
}

fn delegated(to: &str) -> EventKind {
    EventKind::Delegated { from: PlatformId::City, to: PlatformId::parse(to).unwrap(), reason: "routing rules".into() }
}

/// (received, dispatched, completed, on time, returned, revisited, satisfied, unsatisfied, unreachable, reworked)
fn counts(r: &pb::FigureRow) -> [u64; 10] {
    [r.received, r.dispatched, r.completed, r.on_time, r.returned, r.revisited, r.satisfied, r.unsatisfied, r.unreachable, r.reworked]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_figures_of_a_scripted_month_match_the_hand_computed_ones() {
    let p = Platform::start_with("figures", Options { only_revisit: true, ..Options::default() }).await;
    let mut s = Script { p: &p, seq: 0 };
    let d = |m: u8, day: u8| {
        datetime!(2026-01-01 10:00 +08:00).replace_month(time::Month::try_from(m).unwrap()).unwrap().replace_day(day).unwrap()
    };

    // T1: dispatched in October, completed on time on 11-03, satisfied.
    let t1 = s.received(d(10, 30)).await;
    s.dispatched(t1, d(10, 30), "city", "city-water", d(11, 5)).await;
    s.at(t1, d(11, 3), completed()).await;
    s.revisit(t1, d(11, 4), RevisitOutcome::Satisfied).await;
    s.at(t1, d(11, 4), EventKind::Closed { resolution: Resolution::Satisfied }).await;
    // T2: completed late, unsatisfied, reworked, completed on time, satisfied.
    let t2 = s.received(d(11, 2)).await;
    s.dispatched(t2, d(11, 2), "city", "city-water", d(11, 9)).await;
    s.at(t2, d(11, 10), completed()).await;
    s.revisit(t2, d(11, 11), RevisitOutcome::Unsatisfied).await;
    s.at(t2, d(11, 11), EventKind::Reopened { reason: "still leaking".into(), deadline: deadline(d(11, 11), d(11, 16)) }).await;
    s.at(t2, d(11, 13), completed()).await;
    s.revisit(t2, d(11, 16), RevisitOutcome::Satisfied).await;
    s.at(t2, d(11, 16), EventKind::Closed { resolution: Resolution::Satisfied }).await;
    // T3: a district's ticket, returned once, dispatched again, completed on time, unreachable three times.
    let t3 = s.received(d(11, 5)).await;
    s.at(t3, d(11, 5), delegated("county:xicheng")).await;
    s.dispatched(t3, d(11, 5), "county:xicheng", "xicheng-environment", d(11, 12)).await;
    s.at(t3, d(11, 6), EventKind::Returned { reason: "not ours".into() }).await;
    s.dispatched(t3, d(11, 6), "county:xicheng", "xicheng-environment", d(11, 13)).await;
    s.at(t3, d(11, 12), completed()).await;
    for day in [13, 16, 17] {
        s.revisit(t3, d(11, day), RevisitOutcome::Unreachable).await;
    }
    s.at(t3, d(11, 17), EventKind::Closed { resolution: Resolution::Unreachable }).await;
    // T4: dispatched in November, completed in December.
    let t4 = s.received(d(11, 20)).await;
    s.at(t4, d(11, 20), delegated("county:xicheng")).await;
    s.dispatched(t4, d(11, 20), "county:xicheng", "xicheng-environment", d(11, 27)).await;
    s.at(t4, d(12, 1), completed()).await;
    // T5: a consultation answered at once.
    let t5 = s.received(d(11, 25)).await;
    let classified = EventKind::classified_surely(
        Category::Consultation,
        Urgency::Consultation,
        WhistleLevel::Ordinary,
        Jurisdiction::default(),
        whistle_domain::Language::Zh,
    );
    s.at(t5, d(11, 25), classified).await;
    s.at(t5, d(11, 25), EventKind::Answered { answer: "see the website".into(), knowledge_id: "kb-1".into() }).await;
    s.at(t5, d(11, 25), EventKind::Closed { resolution: Resolution::Answered }).await;
    // T6: December.
    s.received(d(12, 2)).await;

    let mut client = p.revisit_as("city").await;
    let ask = |scope: &str, code: &str| pb::FiguresRequest {
        from: "2026-11-01".into(),
        to: "2026-12-01".into(),
        scope: scope.into(),
        code: code.into(),
    };
    let f = client.figures(ask("all", "")).await.expect("figures").into_inner();
    assert_eq!((f.from.as_str(), f.to.as_str()), ("2026-11-01T00:00:00+08:00", "2026-12-01T00:00:00+08:00"));
    assert_eq!(f.source, "daily tallies", "a month of whole days adds up its days");
    let row = |scope: &str, code: &str| {
        f.rows.iter().find(|r| r.scope == scope && r.code == code).unwrap_or_else(|| panic!("no row {scope} {code}")).clone()
    };

    // By hand: counts on the day of their own event, on the unit in charge.
    //                                    rcv disp cmpl ontime ret revis sat unsat unreach rework
    assert_eq!(counts(&row("city", "")), [4, 4, 4, 3, 1, 4, 2, 1, 1, 1]);
    assert_eq!(counts(&row("platform", "city")), [4, 1, 3, 2, 0, 3, 2, 1, 0, 1]);
    assert_eq!(counts(&row("platform", "county:xicheng")), [2, 3, 1, 1, 1, 1, 0, 0, 1, 0]);
    assert_eq!(counts(&row("unit", "city-water")), [1, 1, 3, 2, 0, 3, 2, 1, 0, 1]);
    assert_eq!(counts(&row("unit", "xicheng-environment")), [2, 3, 1, 1, 1, 1, 0, 0, 1, 0]);
    let city = row("city", "");
    assert_eq!(city.on_time_rate, Some(0.75));
    assert_eq!(city.feedback_rate, Some(0.8), "4 completed of 4 dispatched + 1 rework");
    assert_eq!(city.revisit_coverage, Some(1.0));
    assert_eq!(city.satisfaction_rate, Some(2.0 / 3.0), "the unreachable are counted apart");
    assert_eq!((city.rework_rate, city.return_rate), (Some(0.25), Some(0.25)));
    let env = row("unit", "xicheng-environment");
    assert_eq!((env.satisfaction_rate, env.return_rate), (None, Some(1.0 / 3.0)));

    // A period that is not whole days is folded from the topic: the same figures.
    let exact =
        pb::FiguresRequest { from: "2026-11-01T00:00:01+08:00".into(), to: "2026-11-30T23:59:59+08:00".into(), ..Default::default() };
    let folded = client.figures(exact.clone()).await.expect("figures").into_inner();
    assert_eq!(folded.source, "events topic");
    assert_eq!(folded.rows, f.rows);
    // Redis loses the tallies: they come back from the topic, the same.
    p.wipe_figures().await;
    whistle_tests::eventually("the tallies rebuilt, the same", WAIT, Duration::from_millis(100), || {
        let mut client = client.clone();
        let want = f.rows.clone();
        async move {
            let again = client.figures(ask("all", "")).await.expect("figures").into_inner();
            if again.rows == want { Ok(()) } else { Err(again.rows) }
        }
    })
    .await;

    // One scope, one code; a bad period is a clear error.
    let units = client.figures(ask("units", "city-water")).await.expect("figures").into_inner().rows;
    assert_eq!(units.len(), 1);
    assert_eq!(counts(&units[0]), [1, 1, 3, 2, 0, 3, 2, 1, 0, 1]);
    let december =
        client.figures(pb::FiguresRequest { from: "2026-12-01".into(), to: "2027-01-01".into(), ..Default::default() }).await.unwrap();
    assert_eq!(counts(&december.into_inner().rows[0]), [1, 0, 1, 0, 0, 0, 0, 0, 0, 0], "T4's completion and T6");
    let bad =
        client.figures(pb::FiguresRequest { from: "2026-12-01".into(), to: "2026-11-01".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("empty"), "{bad:?}");
    let bad = client.figures(ask("everything", "")).await.unwrap_err();
    assert!(bad.message().contains("scope"), "{bad:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_summary_reaches_each_unit_head_once() {
    let since = std::time::SystemTime::now();
    let p = Platform::start_with("summary", Options { summary: true, ..Options::default() }).await;
    // November: one water ticket, completed on time, the citizen satisfied by SMS.
    let t = p.submit_assigned(request("自来水管漏水了", "东城区景山")).await;
    p.complete_as("city-water", &t.ticket_number, "修好了").await;
    p.sms.wait_for(1, WAIT, is("revisit_question", &t.ticket_number)).await;
    whistle_tests::eventually("the revisit answerable by SMS", WAIT, Duration::from_millis(50), || async {
        let (status, body) = p.sms_reply("13800138000", "1").await;
        if status == 200 { Ok(()) } else { Err((status, body)) }
    })
    .await;
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "closed").await;
    assert!(p.sms.messages(|m| m["template"] == "monthly_summary").is_empty(), "not before the first of the month");

    // December 1st, 09:00: last month's summary goes out, once per head.
    p.clock.set(datetime!(2026-12-01 09:00 +08:00));
    let heads = 183;
    let got = p.sms.wait_for(heads, WAIT, |m| m["template"] == "monthly_summary").await;
    assert_eq!(got.len(), heads);
    let recipients: BTreeSet<&str> = got.iter().map(|m| m["recipient"]["id"].as_str().unwrap()).collect();
    assert_eq!(recipients.len(), heads, "each head once");
    let phones: BTreeSet<&str> = got.iter().map(|m| m["to"].as_str().unwrap()).collect();
    assert_eq!(phones.len(), heads);
    let water = got.iter().find(|m| m["recipient"]["id"] == "unit-head:city-water").expect("city-water's head");
    assert_eq!(water["to"], "13900000002");
    let text = water["text"].as_str().unwrap();
    assert!(text.contains("2026-11") && text.contains("派单 1 件，办结 1 件，按时办结率 100.0%，满意率 100.0%，返工 0 件"), "{text}");
    let quiet = got.iter().find(|m| m["recipient"]["id"] == "unit-head:city-gas").expect("city-gas's head");
    assert!(quiet["text"].as_str().unwrap().contains("派单 0 件，办结 0 件，按时办结率 -"), "{}", quiet["text"]);
    // Heads with a mailbox get it by email too.
    let mails = whistle_tests::wait_mails_since("head.city-water@units.demo-city.example", since, 1, WAIT).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].body.contains("派单 1 件"), "{:?}", mails[0].body);

    // The notifier restarts later that day: nobody gets it twice.
    p.clock.set(datetime!(2026-12-01 15:00 +08:00));
    let mut p = p;
    p.stop("notifier").await;
    p.start_notifier().await;
    let later = p.intake().await.submit_request(request("自来水管又漏水了", "东城区景山")).await.expect("submit").into_inner();
    p.sms.wait_for(1, WAIT, is("ticket_received", &later.ticket_number)).await;
    assert_eq!(p.sms.messages(|m| m["template"] == "monthly_summary").len(), heads);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_an_event_is_counted_once() {
    let p = Platform::start_with("copies", Options { only_revisit: true, ..Options::default() }).await;
    let s = Script { p: &p, seq: 0 };
    let at = datetime!(2026-11-10 10:00 +08:00);
    let t = TicketId::new();
    let request = Request::parse("phone", "", "脚本工单", Location::default(), Contact::default(), "zh").unwrap();
    let received = Event {
        id: EventId::new(),
        ticket_id: t,
        occurred_at: at,
        actor: Actor::system("intake"),
        kind: EventKind::Received { number: TicketNumber::parse("20261110000001").unwrap(), request },
    };
    // Every event published twice, at a later offset each time (a redelivered
    // batch re-published what it had derived, a timer fired again).
    p.publish_event(&received).await;
    p.publish_event(&received).await;
    s.dispatched(t, at, "city", "city-water", datetime!(2026-11-17 10:00 +08:00)).await;
    let done = Event {
        id: EventId::new(),
        ticket_id: t,
        occurred_at: datetime!(2026-11-12 10:00 +08:00),
        actor: Actor::unit(&UnitCode::parse("city-water").unwrap()),
        kind: completed(),
    };
    p.publish_event(&done).await;
    p.publish_event(&done).await;
    let unreachable = Event {
        id: EventId::new(),
        ticket_id: t,
        occurred_at: datetime!(2026-11-13 10:00 +08:00),
        actor: Actor::agent("wang"),
        kind: EventKind::RevisitRecorded { outcome: RevisitOutcome::Unreachable, reason: String::new() },
    };
    p.publish_event(&unreachable).await;
    p.publish_event(&unreachable).await;
    let mut client = p.revisit_as("city").await;
    for (from, to, source) in
        [("2026-11-01", "2026-12-01", "daily tallies"), ("2026-11-01T00:00:01+08:00", "2026-11-30T23:59:59+08:00", "events topic")]
    {
        let f = client
            .figures(pb::FiguresRequest { from: from.into(), to: to.into(), scope: "all".into(), code: String::new() })
            .await
            .expect("figures")
            .into_inner();
        assert_eq!(f.source, source);
        let city = f.rows.iter().find(|r| r.scope == "city").expect("the city's row");
        //                          rcv disp cmpl ontime ret revis sat unsat unreach rework
        assert_eq!(counts(city), [1, 1, 1, 1, 0, 1, 0, 0, 0, 0], "{source}");
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_of_millennia_is_refused_at_once_and_folds_are_bounded() {
    let p = Platform::start_with("bounded", Options { only_revisit: true, ..Options::default() }).await;
    let mut client = p.revisit_as("city").await;
    // Whole days from year 1 to 9999: millions of days, each a Redis read.
    let ask = |from: &str, to: &str| pb::FiguresRequest { from: from.into(), to: to.into(), ..Default::default() };
    let asked = tokio::time::timeout(Duration::from_secs(30), client.figures(ask("0001-01-01", "9999-12-31"))).await;
    let refused = asked.expect("answered within 30 s").expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("at most 400 days"), "{refused:?}");
    // Not whole days: folded from the topic, a few at a time; the longest
    // period allowed is still answered.
    let folds = (0..6).map(|_| {
        let mut c = client.clone();
        async move { c.figures(ask("2026-01-01T00:00:01+08:00", "2027-02-01T00:00:00+08:00")).await }
    });
    for answer in futures::future::join_all(folds).await {
        let rows = answer.expect("a fold of the longest period").into_inner().rows;
        assert_eq!(rows[0].scope, "city");
    }
    p.shutdown().await;
}
