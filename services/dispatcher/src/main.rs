use clap::Parser;
use std::path::PathBuf;

/// Whistle dispatcher: one instance per command platform.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (sections [kafka], [redis], [telemetry], [city], [dispatcher]).
    #[arg(long, env = "WHISTLE_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective config (file, environment and defaults; secrets hidden) and exit.
    #[arg(long)]
    print_config: bool,
    /// The platform this instance serves: city, county:<code> or street:<code>.
    #[arg(long)]
    platform: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config: whistle_dispatcher::Config = whistle_runtime::config::load_service(args.config.as_deref())?;
    if let Some(p) = args.platform.clone() {
        config.dispatcher.platform = p;
    }
    if args.print_config {
        return Ok(whistle_runtime::config::print_config(&config)?);
    }
    let _telemetry = whistle_runtime::telemetry::init("dispatcher", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let dispatcher = whistle_dispatcher::Dispatcher::build(config).await?;
    tracing::info!(addr = %dispatcher.local_addr(), platform = %dispatcher.platform(), "dispatcher desk listening (gRPC)");
    dispatcher.run(shutdown).await?;
    Ok(())
}
