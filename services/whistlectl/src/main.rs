//! whistlectl: a command-line client for Whistle's gRPC APIs.

use anyhow::Context;
use clap::{Parser, Subcommand};
use whistle_proto::v1::{self as pb, desk_client::DeskClient, intake_client::IntakeClient};

#[derive(Parser)]
#[command(version, about = "Command-line client for Whistle")]
struct Cli {
    /// Intake gRPC endpoint.
    #[arg(long, env = "WHISTLE_INTAKE", default_value = "http://127.0.0.1:50051", global = true)]
    intake: String,
    /// Desk gRPC endpoint of a platform's dispatcher.
    #[arg(long, env = "WHISTLE_DESK", default_value = "http://127.0.0.1:50052", global = true)]
    desk: String,
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

type Desk = DeskClient<tonic::codegen::InterceptedService<tonic::transport::Channel, whistle_proto::Bearer>>;

/// A desk client carrying the token from --token, WHISTLE_TOKEN or --token-file.
async fn desk(cli: &Cli) -> anyhow::Result<Desk> {
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => {
            Some(std::fs::read_to_string(f).with_context(|| format!("cannot read the token file {}", f.display()))?.trim().to_owned())
        }
        (None, None) => None,
    };
    let channel = tonic::transport::Channel::from_shared(cli.desk.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach the desk at {}", cli.desk))?;
    Ok(DeskClient::with_interceptor(channel, whistle_proto::Bearer::new(token.as_deref()).map_err(anyhow::Error::msg)?))
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
