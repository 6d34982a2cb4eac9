use clap::Parser;

/// Whistle console: the web pages of the platform desks and the units.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: whistle_runtime::config::ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: whistle_console::Config = args.config.load()?;
    if args.config.printed(&config)? {
        return Ok(());
    }
    let _telemetry = whistle_runtime::telemetry::init("console", &config.telemetry)?;
    let shutdown = whistle_runtime::Shutdown::on_signals();
    let console = whistle_console::Console::build(config).await?;
    tracing::info!("console http://{}", console.local_addr());
    tracing::info!("metrics http://{}/metrics", console.ops_addr());
    console.run(shutdown).await?;
    Ok(())
}
