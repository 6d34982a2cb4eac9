//! Rebuilding every open timer from Kafka when Redis lost them: replay the
//! ticket events, keep for each ticket its current deadline and which of its
//! timers already fired, and arm the rest.

use std::collections::HashMap;
use whistle_domain::{Deadline, TicketId, UnitCode};
use whistle_runtime::{KafkaConfig, Topics};

use crate::timers::{Conn, Record, TimerStore};
use crate::{Effect, Result, effect, timers_for};

/// What a rebuild found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub events: u64,
    pub tickets: usize,
    /// Tickets in a unit's hands, whose timers were armed again.
    pub open: usize,
    /// Timers armed (not yet fired).
    pub timers: u64,
}

#[derive(Default)]
struct Fold {
    unit: Option<UnitCode>,
    deadline: Option<Deadline>,
    fired: [bool; 3],
    traceparent: Option<String>,
}

impl Fold {
    fn set(&mut self, d: Deadline, tp: Option<String>) {
        self.deadline = Some(d);
        self.fired = [false; 3];
        self.traceparent = tp;
    }
}

/// Replays the events topic and re-arms every open timer.
pub async fn rebuild<C: Conn>(kafka: &KafkaConfig, store: &TimerStore<C>) -> Result<Report> {
    let topic = Topics::new(kafka).events();
    let cfg = kafka.clone();
    let (events, folds) = tokio::task::spawn_blocking(move || {
        let mut folds: HashMap<TicketId, Fold> = HashMap::new();
        let events = whistle_runtime::kafka::scan_topic(&cfg, &topic, |m| {
            let Ok(e) = whistle_proto::decode_event(&m.payload) else {
                return;
            };
            let tp = m.headers.iter().find(|(k, _)| k == "traceparent").map(|(_, v)| v.clone());
            let f = folds.entry(e.ticket_id).or_default();
            match effect(&e.kind) {
                Effect::Arm { deadline, unit } => {
                    if let Some(unit) = unit {
                        f.unit = Some(unit.clone());
                    }
                    f.set(*deadline, tp);
                }
                Effect::Fired { kind, version } => {
                    if f.deadline.is_some_and(|d| d.version == version) {
                        f.fired[crate::kind_index(kind)] = true;
                    }
                }
                Effect::Cancel => f.deadline = None,
                Effect::Forget => {
                    folds.remove(&e.ticket_id);
                }
                Effect::None => {}
            }
        })?;
        Ok::<_, whistle_runtime::Error>((events, folds))
    })
    .await
    .map_err(|e| whistle_runtime::Error::Config(format!("rebuild task failed: {e}")))??;

    let mut report = Report { events, tickets: folds.len(), ..Report::default() };
    for (ticket, f) in folds {
        let (Some(deadline), Some(unit)) = (f.deadline, f.unit) else {
            continue;
        };
        let record = Record { version: deadline.version, unit, deadline_ms: crate::millis(deadline.due_at), traceparent: f.traceparent };
        let timers = timers_for(&deadline);
        let unfired = timers.iter().filter(|t| !f.fired[crate::kind_index(t.kind)]).count() as u64;
        store.arm(&ticket, &record, &timers, f.fired).await?;
        report.open += 1;
        report.timers += unfired;
    }
    Ok(report)
}
