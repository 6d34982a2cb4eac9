use clap::Parser;
use std::path::PathBuf;

/// Whistle revisit: the revisit queue, citizens' answers and the figures.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (sections [kafka], [redis], [telemetry], [policy], [calendar], [revisit]).
    #[arg(long, env = "WHISTLE_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: whistle_revisit::Config = whistle_runtime::config::load(args.config.as_deref())?;
    let _telemetry = whistle_runtime::telemetry::init("revisit", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let revisit = whistle_revisit::Revisit::build(config).await?;
    tracing::info!(grpc = %revisit.grpc_addr(), http = %revisit.http_addr(), "revisit listening");
    revisit.run(shutdown).await?;
    Ok(())
}
