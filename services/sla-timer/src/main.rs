use clap::{Parser, Subcommand};

/// Whistle SLA timer: the warning, first and second overdue of every deadline.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: whistle_runtime::config::ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Rebuild every open timer from Kafka now, print how many, and exit.
    /// (A running instance does this by itself when Redis lost its data.)
    Rebuild,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config: whistle_sla_timer::Config = args.config.load()?;
    if args.config.printed(&config)? {
        return Ok(());
    }
    let _telemetry = whistle_runtime::telemetry::init("sla-timer", &config.telemetry)?;
    if args.command.is_some() {
        // A one-off beside the running service: no ops port of its own.
        config.sla_timer.ops_listen.set_port(0);
    }
    let timer = whistle_sla_timer::SlaTimer::build(config).await?;
    match args.command {
        Some(Command::Rebuild) => {
            let r = timer.rebuild().await?;
            println!("rebuilt {} timers of {} open tickets ({} tickets, {} events read)", r.timers, r.open, r.tickets, r.events);
        }
        None => {
            tracing::info!("metrics http://{}/metrics", timer.ops_addr());
            timer.run(whistle_runtime::Shutdown::on_signals()).await?
        }
    }
    Ok(())
}
