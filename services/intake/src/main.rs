use clap::Parser;

/// Whistle intake: registers requests and issues ticket numbers.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: whistle_runtime::config::ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: whistle_intake::Config = args.config.load()?;
    if args.config.printed(&config)? {
        return Ok(());
    }
    let _telemetry = whistle_runtime::telemetry::init("intake", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let intake = whistle_intake::Intake::build(config).await?;
    tracing::info!(addr = %intake.local_addr(), "intake listening (gRPC)");
    tracing::info!("metrics http://{}/metrics", intake.ops_addr());
    intake.run(shutdown).await?;
    Ok(())
}
