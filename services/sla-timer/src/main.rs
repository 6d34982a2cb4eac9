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
    let config: whistle_sla_timer::Config = args.config.load()?;
    if args.config.printed(&config)? {
        return Ok(());
    }
    let _telemetry = whistle_runtime::telemetry::init("sla-timer", &config.telemetry)?;
    let timer = whistle_sla_timer::SlaTimer::build(config).await?;
    match args.command {
        Some(Command::Rebuild) => {
            let r = timer.rebuild().await?;
            println!("rebuilt {} timers of {} open tickets ({} tickets, {} events read)", r.timers, r.open, r.tickets, r.events);
        }
        None => timer.run(whistle_runtime::Shutdown::on_signals()).await?,
    }
    Ok(())
}
