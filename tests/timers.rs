//! The timer engine on real Redis (one server, and a 3-node Redis Cluster):
//! several instances never fire a timer twice, a timer claimed by an instance
//! that died is fired again, cancel and supersede hold.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use whistle_domain::{EventId, ManualClock, TicketId, TimerKind, UnitCode};
use whistle_sla_timer::timers::Conn;
use whistle_sla_timer::{Arm, Due, Engine, EngineSettings, Record, Sink, TimerStore};
use whistle_tests::{cluster, infra, unique_prefix};

#[derive(Default)]
struct Recorder {
    fired: Mutex<Vec<Due>>,
}

impl Sink for Recorder {
    async fn fire(&self, due: Vec<Due>) -> whistle_sla_timer::Result<()> {
        self.fired.lock().unwrap().extend(due);
        Ok(())
    }
}

fn ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

const T0: time::OffsetDateTime = time::macros::datetime!(2026-11-23 10:00 +08:00);

fn record(version: EventId) -> Record {
    Record { version, unit: UnitCode::parse("city-water").unwrap(), deadline_ms: ms(T0), traceparent: None }
}

fn engine<C: Conn>(store: &TimerStore<C>, clock: &ManualClock) -> (Engine<C, Recorder>, Arc<Recorder>) {
    let sink = Arc::new(Recorder::default());
    let settings = EngineSettings { claim_ttl_ms: 5_000, claim_batch: 200, max_idle_ms: 50 };
    (Engine::new(store.clone(), sink.clone(), Arc::new(clock.clone()), Arc::new(Notify::new()), settings), sink)
}

async fn single_store(name: &str) -> TimerStore<redis::aio::ConnectionManager> {
    let cfg = whistle_runtime::RedisConfig {
        url: whistle_runtime::Secret::new(infra().redis_url.clone()),
        key_prefix: unique_prefix(name),
        ..Default::default()
    };
    TimerStore::new(whistle_runtime::redis_client::connect(&cfg).await.unwrap(), &cfg.key_prefix, 8)
}

async fn cluster_store(name: &str) -> TimerStore<whistle_runtime::redis_client::RedisConn> {
    let cfg = whistle_runtime::RedisConfig {
        cluster_nodes: cluster().iter().map(|n| whistle_runtime::Secret::new(n.clone())).collect(),
        key_prefix: unique_prefix(name),
        ..Default::default()
    };
    let conn = whistle_runtime::redis_client::RedisConn::connect(&cfg).await.unwrap();
    assert!(matches!(conn, whistle_runtime::redis_client::RedisConn::Cluster(_)));
    TimerStore::new(conn, &cfg.key_prefix, 8)
}

/// Two engines race over `n` tickets' timers: each fires exactly once.
async fn two_engines_fire_each_timer_once<C: Conn>(store: TimerStore<C>, n: usize) {
    let clock = ManualClock::new(T0);
    let mut expected = HashMap::new();
    for i in 0..n {
        let t = TicketId::new();
        let v = EventId::new();
        let due = ms(T0) + (i as i64 % 1000);
        store.arm(&t, &record(v), &[Arm { kind: TimerKind::FirstOverdue, due_ms: due }], [false; 3]).await.unwrap();
        expected.insert(t, v);
    }
    assert_eq!(store.outstanding().await.unwrap(), n as u64);
    let (a, fired_a) = engine(&store, &clock);
    let (b, fired_b) = engine(&store, &clock);
    // Time moves in steps while both engines claim as fast as they can.
    // Each engine claims in a loop until it is stopped.
    let race = |e: Engine<C, Recorder>| {
        tokio::spawn(async move {
            loop {
                if e.round().await.unwrap().fired == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    let ha = race(a);
    let hb = race(b);
    for step in 1..=10 {
        clock.set(T0 + time::Duration::milliseconds(100 * step));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    whistle_tests::eventually("every timer fired", Duration::from_secs(10), Duration::from_millis(20), || async {
        let left = store.outstanding().await.unwrap();
        if left == 0 { Ok(()) } else { Err(left) }
    })
    .await;
    ha.abort();
    hb.abort();
    let _ = ha.await;
    let _ = hb.await;
    assert_eq!(store.outstanding().await.unwrap(), 0, "everything fired");
    let mut seen: HashMap<TicketId, usize> = HashMap::new();
    for d in fired_a.fired.lock().unwrap().iter().chain(fired_b.fired.lock().unwrap().iter()) {
        assert_eq!(expected.get(&d.ticket), Some(&d.record.version), "fired the version it was armed with");
        *seen.entry(d.ticket).or_default() += 1;
    }
    assert_eq!(seen.len(), n, "none lost");
    assert!(seen.values().all(|c| *c == 1), "none fired twice: {:?}", seen.values().filter(|c| **c > 1).count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_fire_a_timer_twice() {
    two_engines_fire_each_timer_once(single_store("race").await, 3000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_claimed_by_an_instance_that_died_fires_again_once() {
    let store = single_store("died").await;
    let clock = ManualClock::new(T0);
    let mut tickets = Vec::new();
    for _ in 0..500 {
        let t = TicketId::new();
        store.arm(&t, &record(EventId::new()), &[Arm { kind: TimerKind::FirstOverdue, due_ms: ms(T0) }], [false; 3]).await.unwrap();
        tickets.push(t);
    }
    // Instance A claims everything, then is killed -9 before sending.
    let mut claimed = 0;
    for s in 0..store.shards() {
        claimed += store.claim(s, ms(T0), 5_000, 1_000).await.unwrap().len();
    }
    assert_eq!(claimed, 500);
    // Instance B: nothing to do while A's claims are live...
    let (b, fired) = engine(&store, &clock);
    assert_eq!(b.round().await.unwrap().fired, 0);
    clock.set(T0 + time::Duration::milliseconds(4_999));
    assert_eq!(b.round().await.unwrap().fired, 0);
    // ...then the claims expire and B fires every one of them, once.
    clock.set(T0 + time::Duration::milliseconds(5_001));
    let mut total = 0;
    loop {
        let r = b.round().await.unwrap();
        total += r.fired;
        if r.fired == 0 {
            break;
        }
    }
    assert_eq!(total, 500);
    let mut got: Vec<TicketId> = fired.fired.lock().unwrap().iter().map(|d| d.ticket).collect();
    got.sort();
    tickets.sort();
    assert_eq!(got, tickets);
    assert_eq!(store.outstanding().await.unwrap(), 0);
}

/// Cancel, supersede and re-arm after firing, on any store.
async fn cancel_and_supersede<C: Conn>(store: TimerStore<C>) {
    let clock = ManualClock::new(T0);
    let timers =
        |due: i64| vec![Arm { kind: TimerKind::FirstOverdue, due_ms: due }, Arm { kind: TimerKind::SecondOverdue, due_ms: due + 1000 }];
    let (kept, cancelled, superseded) = (TicketId::new(), TicketId::new(), TicketId::new());
    let (v_kept, v_old, v_new) = (EventId::new(), EventId::new(), EventId::new());
    store.arm(&kept, &record(v_kept), &timers(ms(T0)), [false; 3]).await.unwrap();
    store.arm(&cancelled, &record(EventId::new()), &timers(ms(T0)), [false; 3]).await.unwrap();
    store.arm(&superseded, &record(v_old), &timers(ms(T0)), [false; 3]).await.unwrap();
    assert_eq!(store.cancel(&cancelled, false).await.unwrap(), 2);
    store.arm(&superseded, &record(v_new), &timers(ms(T0) + 10_000), [false; 3]).await.unwrap();
    assert_eq!(store.record_unit(&cancelled).await.unwrap().unwrap().as_str(), "city-water", "the unit is kept for rework");

    let (e, fired) = engine(&store, &clock);
    clock.set(T0 + time::Duration::seconds(2));
    while e.round().await.unwrap().fired > 0 {}
    let got: Vec<(TicketId, TimerKind)> = fired.fired.lock().unwrap().iter().map(|d| (d.ticket, d.kind)).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|(t, _)| *t == kept));

    // Re-arming the same version (a redelivered event) does not fire again.
    store.arm(&kept, &record(v_kept), &timers(ms(T0)), [false; 3]).await.unwrap();
    assert!(store.due_of(&kept).await.unwrap().is_empty());

    clock.set(T0 + time::Duration::seconds(12));
    while e.round().await.unwrap().fired > 0 {}
    let sup: Vec<Due> = fired.fired.lock().unwrap().iter().filter(|d| d.ticket == superseded).cloned().collect();
    assert_eq!(sup.len(), 2);
    assert!(sup.iter().all(|d| d.record.version == v_new));
    assert_eq!(store.outstanding().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_supersede_hold() {
    cancel_and_supersede(single_store("cancel").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_timers_run_on_a_redis_cluster() {
    cancel_and_supersede(cluster_store("cluster-cancel").await).await;
    two_engines_fire_each_timer_once(cluster_store("cluster-race").await, 1000).await;
}
