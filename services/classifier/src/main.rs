use clap::Parser;
use std::path::PathBuf;

/// Whistle classifier: category, urgency, whistle level, jurisdiction.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (sections [kafka], [telemetry], [classifier]).
    #[arg(long, env = "WHISTLE_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: whistle_classifier::Config = whistle_runtime::config::load(args.config.as_deref())?;
    let _telemetry = whistle_runtime::telemetry::init("classifier", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let classifier = whistle_classifier::Classifier::build(config).await?;
    classifier.run(shutdown).await?;
    Ok(())
}
