use clap::Parser;
use std::path::PathBuf;

/// Whistle intake: registers requests and issues ticket numbers.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (sections [kafka], [redis], [telemetry], [city], [intake]).
    #[arg(long, env = "WHISTLE_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective config (file, environment and defaults; secrets hidden) and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: whistle_intake::Config = whistle_runtime::config::load_service(args.config.as_deref())?;
    if args.print_config {
        return Ok(whistle_runtime::config::print_config(&config)?);
    }
    let _telemetry = whistle_runtime::telemetry::init("intake", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let intake = whistle_intake::Intake::build(config).await?;
    tracing::info!(addr = %intake.local_addr(), "intake listening (gRPC)");
    intake.run(shutdown).await?;
    Ok(())
}
