use clap::Parser;

/// Whistle dispatcher: one instance per command platform.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: whistle_runtime::config::ConfigArgs,
    /// The platform this instance serves: city, county:<code> or street:<code>.
    #[arg(long)]
    platform: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config: whistle_dispatcher::Config = args.config.load()?;
    if let Some(p) = args.platform.clone() {
        config.dispatcher.platform = p;
    }
    if args.config.printed(&config)? {
        return Ok(());
    }
    let _telemetry = whistle_runtime::telemetry::init("dispatcher", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let dispatcher = whistle_dispatcher::Dispatcher::build(config).await?;
    tracing::info!(addr = %dispatcher.local_addr(), platform = %dispatcher.platform(), "dispatcher desk listening (gRPC)");
    tracing::info!("metrics http://{}/metrics", dispatcher.ops_addr());
    dispatcher.run(shutdown).await?;
    Ok(())
}
