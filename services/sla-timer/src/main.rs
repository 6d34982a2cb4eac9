use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Whistle SLA timer: the warning, first and second overdue of every deadline.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (sections [kafka], [redis], [telemetry], [sla_timer]).
    #[arg(long, env = "WHISTLE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Print the effective config (file, environment and defaults; secrets hidden) and exit.
    #[arg(long, global = true)]
    print_config: bool,
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
    let config: whistle_sla_timer::Config = whistle_runtime::config::load_service(args.config.as_deref())?;
    if args.print_config {
        return Ok(whistle_runtime::config::print_config(&config)?);
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
