use clap::Parser;
use std::path::PathBuf;

/// Whistle revisit: the revisit queue, citizens' answers and the figures.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (sections [kafka], [redis], [telemetry], [city], [policy], [calendar], [revisit]).
    #[arg(long, env = "WHISTLE_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective config (file, environment and defaults; secrets hidden) and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: whistle_revisit::Config = whistle_runtime::config::load_service(args.config.as_deref())?;
    if args.print_config {
        return Ok(whistle_runtime::config::print_config(&config)?);
    }
    let _telemetry = whistle_runtime::telemetry::init("revisit", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let revisit = whistle_revisit::Revisit::build(config).await?;
    tracing::info!(grpc = %revisit.grpc_addr(), http = %revisit.http_addr(), "revisit listening");
    revisit.run(shutdown).await?;
    Ok(())
}
