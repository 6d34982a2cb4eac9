use clap::Parser;
use std::path::PathBuf;

/// Whistle notifier: messages to citizens and units.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (sections [kafka], [redis], [telemetry], [notifier]).
    #[arg(long, env = "WHISTLE_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: whistle_notifier::Config = whistle_runtime::config::load(args.config.as_deref())?;
    let _telemetry = whistle_runtime::telemetry::init("notifier", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let notifier = whistle_notifier::Notifier::build(config).await?;
    notifier.run(shutdown).await?;
    Ok(())
}
