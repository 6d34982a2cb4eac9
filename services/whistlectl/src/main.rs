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

#[derive(Subcommand)]
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
    match cli.command {
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
            let token = match (&cli.token, &cli.token_file) {
                (Some(t), _) => Some(t.clone()),
                (None, Some(f)) => Some(
                    std::fs::read_to_string(f).with_context(|| format!("cannot read the token file {}", f.display()))?.trim().to_owned(),
                ),
                (None, None) => None,
            };
            let channel = tonic::transport::Channel::from_shared(cli.desk.clone())?
                .connect()
                .await
                .with_context(|| format!("cannot reach the desk at {}", cli.desk))?;
            let mut c = DeskClient::with_interceptor(channel, whistle_proto::Bearer::new(token.as_deref()).map_err(anyhow::Error::msg)?);
            let r = c.complete(pb::CompleteRequest { ticket, unit, result }).await.map_err(status)?.into_inner();
            if cli.json {
                println!("{}", serde_json::json!({"ticket_id": r.ticket_id, "event_id": r.event_id}));
            } else {
                println!("completed ticket {}", r.ticket_id);
            }
        }
    }
    Ok(())
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}
