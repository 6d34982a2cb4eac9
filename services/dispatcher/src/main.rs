use clap::Parser;
use std::path::PathBuf;

/// Whistle dispatcher: one instance per command platform.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (sections [kafka], [redis], [telemetry], [dispatcher]).
    #[arg(long, env = "WHISTLE_CONFIG")]
    config: Option<PathBuf>,
    /// The platform this instance serves: city, county:<code> or street:<code>.
    #[arg(long)]
    platform: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config: whistle_dispatcher::Config = whistle_runtime::config::load(args.config.as_deref())?;
    if let Some(p) = args.platform {
        config.dispatcher.platform = p;
    }
    let _telemetry = whistle_runtime::telemetry::init("dispatcher", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let dispatcher = whistle_dispatcher::Dispatcher::build(config).await?;
    tracing::info!(addr = %dispatcher.local_addr(), platform = %dispatcher.platform(), "dispatcher desk listening (gRPC)");
    dispatcher.run(shutdown).await?;
    Ok(())
}
