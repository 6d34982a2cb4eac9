//! The known fault paths, each on the real broker and Redis: what used to
//! stall, lose or leak, and now does not.

use std::collections::BTreeSet;
use std::time::Duration;
use whistle_domain::{Actor, Contact, Event, EventId, EventKind, Location, OverdueLevel, Request, TicketId, TicketNumber, UnitCode};
use whistle_tests::webhook::is;
use whistle_tests::{Platform, request};

const WAIT: Duration = Duration::from_secs(60);

fn event(ticket: TicketId, id: EventId, kind: EventKind) -> Event {
    Event { id, ticket_id: ticket, occurred_at: time::macros::datetime!(2026-11-23 10:00 +08:00), actor: Actor::system("test"), kind }
}

/// Tickets on every partition of the events topic, published as an
/// outside system's `received` events.
async fn tickets_on_every_partition(p: &Platform) -> Vec<TicketId> {
    let mut tickets = Vec::new();
    for n in 1..=60 {
        let t = TicketId::new();
        let r = Request::parse("external", "", "路灯坏了", Location::default(), Contact::default(), "zh").expect("request");
        let number = TicketNumber::parse(&format!("202611239{n:05}")).expect("number");
        p.publish_event(&event(t, EventId::new(), EventKind::Received { number, request: r })).await;
        tickets.push(t);
        if n % 10 == 0 {
            let partitions: BTreeSet<i32> = p.read_topic(&p.topics().events()).await.iter().map(|m| m.partition).collect();
            if partitions.len() == 6 {
                return tickets;
            }
        }
    }
    panic!("60 tickets did not cover the 6 partitions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_does_not_stall_its_partition() {
    let p = Platform::start("repeat").await;
    // The same overdue event twice (a timer fired again after a kill -9), on
    // every partition.
    let tickets = tickets_on_every_partition(&p).await;
    for t in &tickets {
        let overdue = EventKind::Overdue {
            level: OverdueLevel::First,
            deadline_version: EventId::new(),
            due_at: time::macros::datetime!(2026-11-23 09:00 +08:00),
            unit: UnitCode::parse("city-water").expect("unit"),
        };
        let e = event(*t, EventId::new(), overdue);
        p.publish_event(&e).await;
        p.publish_event(&e).await;
    }
    // Everything after them still flows: a new request's citizen is told.
    let t = p.intake().await.submit_request(request("自来水发黄，还有股铁锈味", "西城区金融街")).await.expect("submit").into_inner();
    let told = p.sms.wait_for(1, WAIT, is("ticket_received", &t.ticket_number)).await;
    assert_eq!(told.len(), 1, "the received SMS of a ticket behind a repeated event");
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    p.shutdown().await;
}
