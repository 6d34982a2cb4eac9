use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Whistle classifier: category, urgency, whistle level, jurisdiction and
/// language of every received request. Without a command it runs the
/// service.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: whistle_runtime::config::ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Run,
    /// Train the model from the corpus, write the model file, print
    /// precision, recall and the confusion matrices on dev and test.
    Train {
        #[arg(long, default_value = whistle_classifier::cli::CORPUS_DIR)]
        corpus: PathBuf,
        /// Where to write the model (default: the config's classifier.model).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also train on the desks' corrections (`reclassified` events) read
        /// from the events topic of the configured broker.
        #[arg(long)]
        with_corrections: bool,
        /// Also measure the alternatives (keyword lists, naive Bayes) on dev.
        #[arg(long)]
        compare: bool,
        /// The share of urgent requests the urgent threshold must find on
        /// requests the model has not seen (chosen on out-of-fold readings
        /// of the train split); lower means fewer false alarms.
        #[arg(long, default_value_t = 0.95, value_parser = share)]
        urgent_recall: f32,
    },
    /// Classify JSON lines from stdin ({"id", "text", "address",
    /// "language"}), one result a line on stdout, as the service would.
    Classify {
        /// Print JSON lines instead of a tab-separated table.
        #[arg(long)]
        json: bool,
    },
    /// Try settings around the defaults on the dev split (never test).
    Tune {
        #[arg(long, default_value = whistle_classifier::cli::CORPUS_DIR)]
        corpus: PathBuf,
        /// Only the decision thresholds, on one model.
        #[arg(long)]
        thresholds: bool,
    },
    /// The benchmark: accuracy per language on the held-out test split,
    /// urgent recall, time per request and model size, against the targets.
    Eval {
        #[arg(long, default_value = whistle_classifier::cli::CORPUS_DIR)]
        corpus: PathBuf,
    },
    /// The direct answers' benchmark: precision of the answers given and
    /// the share of covered questions answered at once, per language, on
    /// the held-out half of the labeled set (with --tune: choose the
    /// thresholds on the other half).
    Answers {
        #[arg(long, default_value = "deploy/config/knowledge-eval.jsonl")]
        labeled: PathBuf,
        #[arg(long)]
        tune: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: whistle_classifier::Config = args.config.load()?;
    if args.config.printed(&config)? {
        return Ok(());
    }
    let c = &config.classifier;
    match args.command.unwrap_or(Command::Run) {
        Command::Run => {
            let _telemetry = whistle_runtime::telemetry::init("classifier", &config.telemetry)?;
            let shutdown = whistle_runtime::Shutdown::on_signals();
            let classifier = whistle_classifier::Classifier::build(config).await?;
            tracing::info!("metrics http://{}/metrics", classifier.ops_addr());
            classifier.run(shutdown).await?;
        }
        Command::Train { corpus, out, with_corrections, compare, urgent_recall } => {
            let corrections =
                if with_corrections { whistle_classifier::training::corrections_from(&config.kafka).await? } else { Vec::new() };
            let args = whistle_classifier::cli::TrainArgs {
                corpus,
                city: config.city.file.clone(),
                out: out.unwrap_or_else(|| c.model.clone()),
                compare,
                corrections,
                triage_below: c.triage_below,
                urgent_recall,
            };
            whistle_classifier::cli::train(&args, &mut std::io::stdout().lock())?;
        }
        Command::Classify { json } => {
            let city = config.city.load()?;
            let engine = whistle_classifier::Engine::load(&c.model, &city, c.triage_below)?;
            let refused = whistle_classifier::cli::classify(&engine, std::io::stdin().lock(), &mut std::io::stdout().lock(), json)?;
            if refused > 0 {
                eprintln!("{refused} line(s) refused; each says why");
                std::process::exit(2);
            }
        }
        Command::Tune { corpus, thresholds } => {
            let city = config.city.load()?;
            let examples = whistle_classifier::corpus::load(&corpus)?;
            let rules = whistle_classifier::engine::Rules::new(&city);
            print!("{}", whistle_classifier::training::tune(&rules, &examples, c.triage_below, thresholds));
        }
        Command::Answers { labeled, tune } => {
            let kb = config.city.knowledge()?;
            let set = whistle_classifier::answers::read_labeled(&labeled)?;
            let day = time::OffsetDateTime::now_utc().to_offset(config.city.offset()?).date();
            let mut t = c.answers;
            if tune {
                match whistle_classifier::answers::tune(&kb, &set, 0.985, day) {
                    Some((best, _)) => {
                        println!("tuned on the tune half (precision >= 98.5% there):");
                        t = best;
                    }
                    None => println!("no thresholds reach the precision on the tune half; showing the configured ones"),
                }
            }
            println!("{} entries, {} labeled questions; the held-out (test) half:", kb.len(), set.len());
            let asked = whistle_classifier::answers::hits(&kb, &set, Some("test"), day);
            print!("{}", whistle_classifier::answers::report(&whistle_classifier::answers::score(&kb, &t, &asked), &t));
        }
        Command::Eval { corpus } => {
            let met = whistle_classifier::cli::eval(&corpus, &config.city.file, &c.model, c.triage_below, &mut std::io::stdout().lock())?;
            if !met {
                eprintln!("some targets were missed (see above)");
            }
        }
    }
    Ok(())
}

/// A share between 0 and 1.
fn share(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1 (such as 0.95)")),
    }
}
