use clap::Parser;
use std::path::PathBuf;

/// Whistle intake: registers requests and issues ticket numbers.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (sections [kafka], [redis], [telemetry], [intake]).
    #[arg(long, env = "WHISTLE_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: whistle_intake::Config = whistle_runtime::config::load(args.config.as_deref())?;
    let _telemetry = whistle_runtime::telemetry::init("intake", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let intake = whistle_intake::Intake::build(config).await?;
    tracing::info!(addr = %intake.local_addr(), "intake listening (gRPC)");
    intake.run(shutdown).await?;
    Ok(())
}
