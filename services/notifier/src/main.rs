use clap::Parser;

/// Whistle notifier: messages to citizens and units.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: whistle_runtime::config::ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: whistle_notifier::Config = args.config.load()?;
    if args.config.printed(&config)? {
        return Ok(());
    }
    let _telemetry = whistle_runtime::telemetry::init("notifier", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let notifier = whistle_notifier::Notifier::build(config).await?;
    tracing::info!("metrics http://{}/metrics", notifier.ops_addr());
    notifier.run(shutdown).await?;
    Ok(())
}
