//! whistlectl: a command-line client for Whistle's gRPC APIs. `args` says
//! what a user may type, `connect` reaches the services, `show` prints what
//! came back; `run` makes the calls.

mod args;
mod connect;
mod show;

use clap::Parser;
use whistle_proto::v1 as pb;

use args::{Cli, Command};
use connect::{desk, intake, revisit, rfc3339, status};
use show::Shown;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Makes the command's call and prints what came back.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let off = cli.utc_offset;
    let shown: Shown = match cli.command.clone() {
        Command::Submit { text, channel, external_id, address, lat, lon, name, phone, email, language } => {
            let req = pb::SubmitRequestRequest {
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
            };
            show::submitted(&intake(&cli).await?.submit_request(req).await.map_err(status)?.into_inner())
        }
        Command::Ticket { ticket, phone } => {
            let req = pb::GetTicketRequest { ticket, phone, ..Default::default() };
            show::ticket(&intake(&cli).await?.get_ticket(req).await.map_err(status)?.into_inner(), off)
        }
        Command::Complete { ticket, unit, result } => {
            let r = desk(&cli).await?.complete(pb::CompleteRequest { ticket, unit, result }).await.map_err(status)?.into_inner();
            show::done("completed", &r)
        }
        Command::Acknowledge { ticket } => {
            let r = desk(&cli).await?.acknowledge(pb::TicketRef { ticket }).await.map_err(status)?.into_inner();
            show::done("acknowledged", &r)
        }
        Command::Return { ticket, reason } => {
            let r = desk(&cli).await?.r#return(pb::ReasonRequest { ticket, reason }).await.map_err(status)?.into_inner();
            show::done("returned", &r)
        }
        Command::Dispatch { ticket, unit } => {
            let r = desk(&cli).await?.dispatch(pb::DispatchRequest { ticket, unit }).await.map_err(status)?.into_inner();
            show::done("dispatched", &r)
        }
        Command::Extend { ticket, reason, until } => {
            let req = pb::ExtensionRequest { ticket, reason, requested_due_at: Some(rfc3339(&until)?) };
            show::done("extension requested for", &desk(&cli).await?.request_extension(req).await.map_err(status)?.into_inner())
        }
        Command::Decide { ticket, until, refuse, note } => {
            if !refuse && until.is_none() {
                anyhow::bail!("give --until <deadline> to grant, or --refuse");
            }
            let due_at = until.as_deref().map(rfc3339).transpose()?;
            let req = pb::ExtensionDecision { ticket, grant: !refuse, due_at, note };
            let r = desk(&cli).await?.decide_extension(req).await.map_err(status)?.into_inner();
            show::done(if refuse { "extension refused for" } else { "extension granted for" }, &r)
        }
        Command::Supervise { ticket, reason } => {
            let r = desk(&cli).await?.supervise(pb::ReasonRequest { ticket, reason }).await.map_err(status)?.into_inner();
            show::done("supervising", &r)
        }
        Command::Whistle { ticket, reason } => {
            let r = desk(&cli).await?.whistle(pb::ReasonRequest { ticket, reason }).await.map_err(status)?.into_inner();
            show::done("whistled", &r)
        }
        Command::ReportIn { ticket } => {
            let r = desk(&cli).await?.report_in(pb::TicketRef { ticket }).await.map_err(status)?.into_inner();
            show::done("reported in to", &r)
        }
        Command::Reclassify { ticket, category, urgency, whistle_level, county, street, community, reason } => {
            let req = pb::ReclassifyRequest { ticket, category, urgency, whistle_level, county, street, community, reason };
            show::done("reclassified", &desk(&cli).await?.reclassify(req).await.map_err(status)?.into_inner())
        }
        Command::Delegate { ticket, platform, reason } => {
            let r = desk(&cli).await?.delegate(pb::DelegateRequest { ticket, platform, reason }).await.map_err(status)?.into_inner();
            show::done("delegated", &r)
        }
        Command::Queue { once } => {
            let mut client = desk(&cli).await?;
            // Watch first, so nothing that changes while the snapshot is read is missed.
            let stream = if once { None } else { Some(client.watch(pb::WatchRequest {}).await.map_err(status)?.into_inner()) };
            let waiting = client.queue(pb::QueueRequest { limit: 0, open: false }).await.map_err(status)?.into_inner();
            show::waiting(&waiting.entries, off).print(cli.json);
            let Some(mut stream) = stream else { return Ok(()) };
            if !cli.json {
                println!("{}", show::queue_header());
            }
            while let Some(item) = stream.message().await.map_err(status)? {
                show::queue_item(&item, off).print(cli.json);
            }
            return Ok(());
        }
        Command::Revisits { all, limit } => {
            let req = pb::ListDueRequest { limit, include_later: all };
            show::revisits(&revisit(&cli).await?.list_due(req).await.map_err(status)?.into_inner().tasks)
        }
        Command::Claim { ticket } => {
            show::claimed(&revisit(&cli).await?.claim(pb::RevisitRef { ticket }).await.map_err(status)?.into_inner())
        }
        Command::Revisit { ticket, outcome, reason } => {
            let req = pb::RecordRequest { ticket, outcome, reason };
            show::recorded(&revisit(&cli).await?.record(req).await.map_err(status)?.into_inner())
        }
        Command::Figures { from, to, scope, code } => {
            let req = pb::FiguresRequest { from, to, scope, code };
            show::figures(&revisit(&cli).await?.figures(req).await.map_err(status)?.into_inner())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "whistlectl", &mut std::io::stdout());
            return Ok(());
        }
        Command::History { ticket } => {
            show::history(&desk(&cli).await?.history(pb::TicketRef { ticket }).await.map_err(status)?.into_inner(), off)
        }
    };
    shown.print(cli.json);
    Ok(())
}
