use clap::Parser;

/// Whistle revisit: the revisit queue, citizens' answers and the figures.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: whistle_runtime::config::ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: whistle_revisit::Config = args.config.load()?;
    if args.config.printed(&config)? {
        return Ok(());
    }
    let _telemetry = whistle_runtime::telemetry::init("revisit", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let revisit = whistle_revisit::Revisit::build(config).await?;
    tracing::info!(grpc = %revisit.grpc_addr(), http = %revisit.http_addr(), "revisit listening");
    tracing::info!("metrics http://{}/metrics", revisit.ops_addr());
    revisit.run(shutdown).await?;
    Ok(())
}
