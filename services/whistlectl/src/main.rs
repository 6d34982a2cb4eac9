//! whistlectl: a command-line client for Whistle's gRPC APIs.

use anyhow::Context;
use clap::{Parser, Subcommand};
use whistle_domain::figures::percent;
use whistle_proto::v1::{self as pb, desk_client::DeskClient, intake_client::IntakeClient, revisit_client::RevisitClient};

#[derive(Parser)]
#[command(version, about = "Command-line client for Whistle")]
struct Cli {
    /// Intake gRPC endpoint.
    #[arg(long, env = "WHISTLE_INTAKE", default_value = "http://127.0.0.1:50051", global = true)]
    intake: String,
    /// Desk gRPC endpoint of a platform's dispatcher.
    #[arg(long, env = "WHISTLE_DESK", default_value = "http://127.0.0.1:50052", global = true)]
    desk: String,
    /// Revisit gRPC endpoint (revisit queue, figures).
    #[arg(long, env = "WHISTLE_REVISIT", default_value = "http://127.0.0.1:50056", global = true)]
    revisit: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Desk token (bound to a platform or a unit).
    #[arg(long, env = "WHISTLE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Read the desk token from this file.
    #[arg(long, env = "WHISTLE_TOKEN_FILE", global = true)]
    token_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Clone)]
enum Command {
    /// Submit a citizen's request; prints the ticket number.
    Submit {
        /// What the citizen asks for.
        text: String,
        #[arg(long, default_value = "phone")]
        channel: String,
        /// The channel's own id; resubmitting it returns the same ticket.
        #[arg(long, default_value = "")]
        external_id: String,
        #[arg(long, default_value = "")]
        address: String,
        #[arg(long)]
        lat: Option<f64>,
        #[arg(long)]
        lon: Option<f64>,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, default_value = "")]
        phone: String,
        #[arg(long, default_value = "")]
        email: String,
        /// zh, en, ja, ko or ru.
        #[arg(long, default_value = "")]
        language: String,
    },
    /// Show a ticket by number or id.
    Ticket { ticket: String },
    /// Acknowledge a ticket (签收), as its unit.
    Acknowledge { ticket: String },
    /// Return a misrouted ticket (退单), as its unit, with the reason.
    Return {
        ticket: String,
        #[arg(long)]
        reason: String,
    },
    /// Dispatch a ticket to one of the platform's units, as the platform desk.
    Dispatch {
        ticket: String,
        #[arg(long)]
        unit: String,
    },
    /// Ask for more time, as the ticket's unit.
    Extend {
        ticket: String,
        #[arg(long)]
        reason: String,
        /// The deadline asked for, RFC 3339 (e.g. 2026-12-03T10:00:00+08:00).
        #[arg(long)]
        until: String,
    },
    /// Grant (with --until) or refuse (--refuse) an extension, as the platform desk.
    Decide {
        ticket: String,
        #[arg(long, conflicts_with = "refuse")]
        until: Option<String>,
        #[arg(long)]
        refuse: bool,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Put a ticket on the supervision list (督办), as the platform desk.
    Supervise {
        ticket: String,
        #[arg(long)]
        reason: String,
    },
    /// The ticket's audit trail, in order, with actors.
    History { ticket: String },
    /// Call the tier above in (吹哨), as the platform desk holding the ticket.
    Whistle {
        ticket: String,
        #[arg(long)]
        reason: String,
    },
    /// Take part in a ticket of your platform (报到), as a department.
    ReportIn { ticket: String },
    /// Correct the classification of a ticket waiting on your desk (the
    /// city's triage queue, or delegated, whistled, returned); it is routed
    /// again. Options left out keep their value.
    Reclassify {
        ticket: String,
        #[arg(long, default_value = "")]
        category: String,
        #[arg(long, default_value = "")]
        urgency: String,
        #[arg(long, default_value = "")]
        whistle_level: String,
        #[arg(long, default_value = "")]
        county: String,
        #[arg(long, default_value = "")]
        street: String,
        #[arg(long, default_value = "")]
        community: String,
        #[arg(long)]
        reason: String,
    },
    /// Hand a ticket down to a platform below (county:<code>, street:<code>).
    Delegate {
        ticket: String,
        #[arg(long)]
        platform: String,
        #[arg(long)]
        reason: String,
    },
    /// Watch the platform's queue as it changes (one row per change), as the platform desk.
    Queue,
    /// The revisit queue: what is due now (or all waiting, with --all), as an agent.
    Revisits {
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Take a ticket off other agents' queues while you call the citizen.
    Claim { ticket: String },
    /// Record a revisit: satisfied, unsatisfied (with --reason) or unreachable.
    Revisit {
        ticket: String,
        outcome: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Figures of a period as a table: per unit, per platform and city-wide.
    Figures {
        /// First day (YYYY-MM-DD, city time) or RFC 3339.
        #[arg(long)]
        from: String,
        /// Day after the last (exclusive).
        #[arg(long)]
        to: String,
        /// all, city, platforms or units.
        #[arg(long, default_value = "all")]
        scope: String,
        /// Only this platform or unit.
        #[arg(long, default_value = "")]
        code: String,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Report a ticket completed, as the unit it is assigned to (the token's unit).
    Complete {
        ticket: String,
        /// Optional: must be the token's unit.
        #[arg(long, default_value = "")]
        unit: String,
        #[arg(long)]
        result: String,
    },
}

fn ts(t: &Option<whistle_proto::prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| whistle_proto::to_datetime(t).ok())
        .and_then(|t| {
            let t = t.to_offset(time::macros::offset!(+8));
            t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] +08:00")).ok()
        })
        .unwrap_or_default()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.clone() {
        Command::Submit { text, channel, external_id, address, lat, lon, name, phone, email, language } => {
            let mut c =
                IntakeClient::connect(cli.intake.clone()).await.with_context(|| format!("cannot reach intake at {}", cli.intake))?;
            let r = c
                .submit_request(pb::SubmitRequestRequest {
                    channel,
                    external_id,
                    text,
                    address,
                    lat,
                    lon,
                    citizen_name: name,
                    citizen_phone: phone,
                    citizen_email: email,
                    language,
                })
                .await
                .map_err(status)?
                .into_inner();
            if cli.json {
                println!("{}", serde_json::json!({"ticket_id": r.ticket_id, "ticket_number": r.ticket_number, "duplicate": r.duplicate}));
            } else {
                println!("ticket number {}{}", r.ticket_number, if r.duplicate { " (already registered)" } else { "" });
            }
        }
        Command::Ticket { ticket } => {
            let mut c =
                IntakeClient::connect(cli.intake.clone()).await.with_context(|| format!("cannot reach intake at {}", cli.intake))?;
            let t = c.get_ticket(pb::GetTicketRequest { ticket, ..Default::default() }).await.map_err(status)?.into_inner();
            let j = t.jurisdiction.clone().unwrap_or_default();
            let rows = [
                ("number", t.ticket_number.clone()),
                ("id", t.ticket_id.clone()),
                ("state", t.state.clone()),
                ("channel", t.channel.clone()),
                ("category", t.category.clone()),
                ("urgency", t.urgency.clone()),
                ("whistle level", t.whistle_level.clone()),
                ("county", j.county),
                ("street", j.street),
                ("community", j.community),
                ("platform", t.platform.clone()),
                ("unit", t.unit.clone()),
                ("deadline", ts(&t.deadline)),
                ("overdue level", t.overdue_level.to_string()),
                ("supervised", t.supervised.to_string()),
                ("result", t.result.clone()),
                ("resolution", t.resolution.clone()),
                ("received", ts(&t.received_at)),
                ("updated", ts(&t.updated_at)),
                ("text", t.text.clone()),
            ];
            if cli.json {
                let map: serde_json::Map<String, serde_json::Value> =
                    rows.iter().map(|(k, v)| (k.replace(' ', "_"), serde_json::Value::String(v.clone()))).collect();
                println!("{}", serde_json::Value::Object(map));
            } else {
                for (k, v) in rows {
                    println!("{k:>14}  {v}");
                }
            }
        }
        Command::Complete { ticket, unit, result } => {
            let r = desk(&cli).await?.complete(pb::CompleteRequest { ticket, unit, result }).await.map_err(status)?.into_inner();
            done(&cli, "completed", &r);
        }
        Command::Acknowledge { ticket } => {
            let r = desk(&cli).await?.acknowledge(pb::TicketRef { ticket }).await.map_err(status)?.into_inner();
            done(&cli, "acknowledged", &r);
        }
        Command::Return { ticket, reason } => {
            let r = desk(&cli).await?.r#return(pb::ReasonRequest { ticket, reason }).await.map_err(status)?.into_inner();
            done(&cli, "returned", &r);
        }
        Command::Dispatch { ticket, unit } => {
            let r = desk(&cli).await?.dispatch(pb::DispatchRequest { ticket, unit }).await.map_err(status)?.into_inner();
            done(&cli, "dispatched", &r);
        }
        Command::Extend { ticket, reason, until } => {
            let requested_due_at = Some(rfc3339(&until)?);
            let r = desk(&cli)
                .await?
                .request_extension(pb::ExtensionRequest { ticket, reason, requested_due_at })
                .await
                .map_err(status)?
                .into_inner();
            done(&cli, "extension requested for", &r);
        }
        Command::Decide { ticket, until, refuse, note } => {
            if !refuse && until.is_none() {
                anyhow::bail!("give --until <deadline> to grant, or --refuse");
            }
            let due_at = until.as_deref().map(rfc3339).transpose()?;
            let r = desk(&cli)
                .await?
                .decide_extension(pb::ExtensionDecision { ticket, grant: !refuse, due_at, note })
                .await
                .map_err(status)?
                .into_inner();
            done(&cli, if refuse { "extension refused for" } else { "extension granted for" }, &r);
        }
        Command::Supervise { ticket, reason } => {
            let r = desk(&cli).await?.supervise(pb::ReasonRequest { ticket, reason }).await.map_err(status)?.into_inner();
            done(&cli, "supervising", &r);
        }
        Command::Whistle { ticket, reason } => {
            let r = desk(&cli).await?.whistle(pb::ReasonRequest { ticket, reason }).await.map_err(status)?.into_inner();
            done(&cli, "whistled", &r);
        }
        Command::ReportIn { ticket } => {
            let r = desk(&cli).await?.report_in(pb::TicketRef { ticket }).await.map_err(status)?.into_inner();
            done(&cli, "reported in to", &r);
        }
        Command::Reclassify { ticket, category, urgency, whistle_level, county, street, community, reason } => {
            let req = pb::ReclassifyRequest { ticket, category, urgency, whistle_level, county, street, community, reason };
            let r = desk(&cli).await?.reclassify(req).await.map_err(status)?.into_inner();
            done(&cli, "reclassified", &r);
        }
        Command::Delegate { ticket, platform, reason } => {
            let r = desk(&cli).await?.delegate(pb::DelegateRequest { ticket, platform, reason }).await.map_err(status)?.into_inner();
            done(&cli, "delegated", &r);
        }
        Command::Queue => {
            let mut stream = desk(&cli).await?.watch(pb::WatchRequest {}).await.map_err(status)?.into_inner();
            if !cli.json {
                println!("{:<28} {:<11} {:<38} {:<26} reason", "at", "event", "ticket", "from");
            }
            while let Some(item) = stream.message().await.map_err(status)? {
                if cli.json {
                    println!(
                        "{}",
                        serde_json::json!({"at": ts(&item.at), "event": item.event, "ticket_id": item.ticket_id, "from": item.from, "reason": item.reason, "overdue_level": item.overdue_level})
                    );
                } else {
                    let event = if item.overdue_level > 0 { format!("{}{}", item.event, item.overdue_level) } else { item.event.clone() };
                    println!("{:<28} {:<11} {:<38} {:<26} {}", ts(&item.at), event, item.ticket_id, item.from, item.reason);
                }
            }
        }
        Command::Revisits { all, limit } => {
            let tasks =
                revisit(&cli).await?.list_due(pb::ListDueRequest { limit, include_later: all }).await.map_err(status)?.into_inner().tasks;
            if cli.json {
                let rows: Vec<_> = tasks
                    .iter()
                    .map(|t| serde_json::json!({"ticket_number": t.ticket_number, "ticket_id": t.ticket_id, "unit": t.unit, "due_at": t.due_at, "attempts": t.attempts, "claimed_by": t.claimed_by, "phone": t.citizen_phone, "language": t.language, "result": t.result}))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:<16} {:<26} {:<8} {:<24} {:<12} {:<14} result", "ticket", "due", "tries", "unit", "claimed by", "phone");
                for t in &tasks {
                    let tries = format!("{}/{}", t.attempts, t.max_attempts);
                    println!(
                        "{:<16} {:<26} {:<8} {:<24} {:<12} {:<14} {}",
                        t.ticket_number, t.due_at, tries, t.unit, t.claimed_by, t.citizen_phone, t.result
                    );
                }
            }
        }
        Command::Claim { ticket } => {
            let t = revisit(&cli).await?.claim(pb::RevisitRef { ticket }).await.map_err(status)?.into_inner();
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"ticket_number": t.ticket_number, "claimed_until": t.claimed_until, "phone": t.citizen_phone})
                );
            } else {
                println!(
                    "claimed ticket {} until {}: call {} ({}), result: {}",
                    t.ticket_number, t.claimed_until, t.citizen_phone, t.language, t.result
                );
            }
        }
        Command::Revisit { ticket, outcome, reason } => {
            let r = revisit(&cli).await?.record(pb::RecordRequest { ticket, outcome, reason }).await.map_err(status)?.into_inner();
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"ticket_number": r.ticket_number, "next": r.next, "attempts": r.attempts, "next_due_at": r.next_due_at, "rework_due_at": r.rework_due_at})
                );
            } else {
                match r.next.as_str() {
                    "reopened" => println!("ticket {} reopened for rework, due {}", r.ticket_number, r.rework_due_at),
                    "retry" => println!("ticket {}: try {} recorded, next try due {}", r.ticket_number, r.attempts, r.next_due_at),
                    _ => println!("ticket {} closed", r.ticket_number),
                }
            }
        }
        Command::Figures { from, to, scope, code } => {
            let f = revisit(&cli).await?.figures(pb::FiguresRequest { from, to, scope, code }).await.map_err(status)?.into_inner();
            if cli.json {
                let rows: Vec<_> = f.rows.iter().map(figure_json).collect();
                println!("{}", serde_json::json!({"from": f.from, "to": f.to, "source": f.source, "rows": rows}));
            } else {
                print!("{}", figures_table(&f));
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "whistlectl", &mut std::io::stdout());
        }
        Command::History { ticket } => {
            let h = desk(&cli).await?.history(pb::TicketRef { ticket }).await.map_err(status)?.into_inner();
            if cli.json {
                let rows: Vec<_> = h
                    .entries
                    .iter()
                    .map(|e| serde_json::json!({"event_id": e.event_id, "event": e.event, "at": ts(&e.at), "actor_kind": e.actor_kind, "actor_id": e.actor_id, "refused": e.refused}))
                    .collect();
                println!("{}", serde_json::json!({"ticket_id": h.ticket_id, "entries": rows}));
            } else {
                println!("{:<28} {:<20} {:<10} who", "at", "event", "by");
                for e in &h.entries {
                    let note = if e.refused.is_empty() { String::new() } else { format!("  (refused: {})", e.refused) };
                    println!("{:<28} {:<20} {:<10} {}{note}", ts(&e.at), e.event, e.actor_kind, e.actor_id);
                }
            }
        }
    }
    Ok(())
}

/// The token from --token, WHISTLE_TOKEN or --token-file.
fn token(cli: &Cli) -> anyhow::Result<Option<String>> {
    Ok(match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => {
            Some(std::fs::read_to_string(f).with_context(|| format!("cannot read the token file {}", f.display()))?.trim().to_owned())
        }
        (None, None) => None,
    })
}

type Desk = DeskClient<tonic::codegen::InterceptedService<tonic::transport::Channel, whistle_proto::Bearer>>;

/// A desk client carrying the token from --token, WHISTLE_TOKEN or --token-file.
async fn desk(cli: &Cli) -> anyhow::Result<Desk> {
    let token = token(cli)?;
    let channel = tonic::transport::Channel::from_shared(cli.desk.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach the desk at {}", cli.desk))?;
    Ok(DeskClient::with_interceptor(channel, whistle_proto::Bearer::new(token.as_deref()).map_err(anyhow::Error::msg)?))
}

type Revisit = RevisitClient<tonic::codegen::InterceptedService<tonic::transport::Channel, whistle_proto::Bearer>>;

/// A revisit client carrying the token (an agent's, or any desk token for figures).
async fn revisit(cli: &Cli) -> anyhow::Result<Revisit> {
    let channel = tonic::transport::Channel::from_shared(cli.revisit.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach the revisit service at {}", cli.revisit))?;
    Ok(RevisitClient::with_interceptor(channel, whistle_proto::Bearer::new(token(cli)?.as_deref()).map_err(anyhow::Error::msg)?))
}

fn figure_json(r: &pb::FigureRow) -> serde_json::Value {
    serde_json::json!({
        "scope": r.scope, "code": r.code, "received": r.received, "dispatched": r.dispatched, "completed": r.completed,
        "on_time": r.on_time, "returned": r.returned, "revisited": r.revisited, "satisfied": r.satisfied,
        "unsatisfied": r.unsatisfied, "unreachable": r.unreachable, "reworked": r.reworked,
        "on_time_rate": r.on_time_rate, "feedback_rate": r.feedback_rate, "revisit_coverage": r.revisit_coverage,
        "satisfaction_rate": r.satisfaction_rate, "rework_rate": r.rework_rate, "return_rate": r.return_rate,
    })
}

/// The figures as a fixed-width table, one row per scope.
fn figures_table(f: &pb::FiguresResponse) -> String {
    let mut out = format!("figures from {} to {} ({})\n", f.from, f.to, f.source);
    out += &format!(
        "{:<34} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}\n",
        "scope", "recv", "disp", "done", "on-time", "feedback", "revisit", "satisf", "rework", "return", "unreach"
    );
    for r in &f.rows {
        let scope = if r.code.is_empty() { r.scope.clone() } else { format!("{} {}", r.scope, r.code) };
        out += &format!(
            "{:<34} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}\n",
            scope,
            r.received,
            r.dispatched,
            r.completed,
            percent(r.on_time_rate),
            percent(r.feedback_rate),
            percent(r.revisit_coverage),
            percent(r.satisfaction_rate),
            percent(r.rework_rate),
            percent(r.return_rate),
            r.unreachable
        );
    }
    out
}

fn done(cli: &Cli, what: &str, r: &pb::ActionResponse) {
    if cli.json {
        println!("{}", serde_json::json!({"ticket_id": r.ticket_id, "event_id": r.event_id}));
    } else {
        println!("{what} ticket {}", r.ticket_id);
    }
}

fn rfc3339(s: &str) -> anyhow::Result<whistle_proto::prost_types::Timestamp> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{s:?} is not an RFC 3339 time like 2026-12-03T10:00:00+08:00"))?;
    Ok(whistle_proto::timestamp(t))
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_print_as_a_table_with_rates_and_dashes() {
        let f = pb::FiguresResponse {
            from: "2026-11-01T00:00:00+08:00".into(),
            to: "2026-12-01T00:00:00+08:00".into(),
            source: "daily tallies".into(),
            rows: vec![
                pb::FigureRow {
                    scope: "city".into(),
                    received: 4,
                    dispatched: 4,
                    completed: 4,
                    on_time_rate: Some(0.75),
                    satisfaction_rate: Some(2.0 / 3.0),
                    ..Default::default()
                },
                pb::FigureRow { scope: "unit".into(), code: "city-water".into(), dispatched: 1, ..Default::default() },
            ],
        };
        let t = figures_table(&f);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[2].starts_with("city ") && lines[2].contains("75.0%") && lines[2].contains("66.7%"), "{t}");
        assert!(lines[3].starts_with("unit city-water") && lines[3].contains(" - "), "{t}");
    }
}
