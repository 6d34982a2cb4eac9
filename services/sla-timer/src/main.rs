use clap::Parser;
use std::path::PathBuf;

/// Whistle SLA timer: overdue reminders, exactly once per deadline.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (sections [kafka], [redis], [telemetry], [sla_timer]).
    #[arg(long, env = "WHISTLE_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: whistle_sla_timer::Config = whistle_runtime::config::load(args.config.as_deref())?;
    let _telemetry = whistle_runtime::telemetry::init("sla-timer", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let timer = whistle_sla_timer::SlaTimer::build(config).await?;
    timer.run(shutdown).await?;
    Ok(())
}
