//! The command line: every command and option of whistlectl.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Command-line client for Whistle")]
pub(crate) struct Cli {
    /// Intake gRPC endpoint.
    #[arg(long, env = "WHISTLE_INTAKE", default_value = "http://127.0.0.1:50051", global = true)]
    pub(crate) intake: String,
    /// Desk gRPC endpoint of a platform's dispatcher.
    #[arg(long, env = "WHISTLE_DESK", default_value = "http://127.0.0.1:50052", global = true)]
    pub(crate) desk: String,
    /// Revisit gRPC endpoint (revisit queue, figures).
    #[arg(long, env = "WHISTLE_REVISIT", default_value = "http://127.0.0.1:50056", global = true)]
    pub(crate) revisit: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Desk token (bound to a platform or a unit).
    #[arg(long, env = "WHISTLE_TOKEN", global = true, hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// The city's UTC offset: times are printed as the city reads them.
    #[arg(long, env = "WHISTLE_UTC_OFFSET", default_value = "+08:00", global = true, value_parser = utc_offset)]
    pub(crate) utc_offset: time::UtcOffset,
    /// Read the desk token from this file.
    #[arg(long, env = "WHISTLE_TOKEN_FILE", global = true)]
    pub(crate) token_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Clone)]
pub(crate) enum Command {
    /// Submit a citizen's request; prints the ticket number.
    Submit {
        /// What the citizen asks for.
        text: String,
        #[arg(long, default_value = "phone")]
        channel: String,
        /// The channel's own id; resubmitting it returns the same ticket.
        #[arg(long, default_value = "")]
        external_id: String,
        #[arg(long, default_value = "")]
        address: String,
        #[arg(long)]
        lat: Option<f64>,
        #[arg(long)]
        lon: Option<f64>,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, default_value = "")]
        phone: String,
        #[arg(long, default_value = "")]
        email: String,
        /// zh, en, ja, ko or ru.
        #[arg(long, default_value = "")]
        language: String,
    },
    /// Show a ticket by number or id. By number, with a token of
    /// `[intake] tokens` (WHISTLE_TOKEN) or the citizen's phone.
    Ticket {
        ticket: String,
        /// The citizen's phone, as the proof a number needs without a token.
        #[arg(long, default_value = "")]
        phone: String,
    },
    /// Acknowledge a ticket (签收), as its unit.
    Acknowledge { ticket: String },
    /// Return a misrouted ticket (退单), as its unit, with the reason.
    Return {
        ticket: String,
        #[arg(long)]
        reason: String,
    },
    /// Dispatch a ticket to one of the platform's units, as the platform desk.
    Dispatch {
        ticket: String,
        #[arg(long)]
        unit: String,
    },
    /// Ask for more time, as the ticket's unit.
    Extend {
        ticket: String,
        #[arg(long)]
        reason: String,
        /// The deadline asked for, RFC 3339 (e.g. 2026-12-03T10:00:00+08:00).
        #[arg(long)]
        until: String,
    },
    /// Grant (with --until) or refuse (--refuse) an extension, as the platform desk.
    Decide {
        ticket: String,
        #[arg(long, conflicts_with = "refuse")]
        until: Option<String>,
        #[arg(long)]
        refuse: bool,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Put a ticket on the supervision list (督办), as the platform desk.
    Supervise {
        ticket: String,
        #[arg(long)]
        reason: String,
    },
    /// The ticket's audit trail, in order, with actors.
    History { ticket: String },
    /// Call the tier above in (吹哨), as the platform desk holding the ticket.
    Whistle {
        ticket: String,
        #[arg(long)]
        reason: String,
    },
    /// Take part in a ticket of your platform (报到), as a department.
    ReportIn { ticket: String },
    /// Correct the classification of a ticket waiting on your desk (the
    /// city's triage queue, or delegated, whistled, returned); it is routed
    /// again. Options left out keep their value.
    Reclassify {
        ticket: String,
        #[arg(long, default_value = "")]
        category: String,
        #[arg(long, default_value = "")]
        urgency: String,
        #[arg(long, default_value = "")]
        whistle_level: String,
        #[arg(long, default_value = "")]
        county: String,
        #[arg(long, default_value = "")]
        street: String,
        #[arg(long, default_value = "")]
        community: String,
        #[arg(long)]
        reason: String,
    },
    /// Hand a ticket down to a platform below (county:<code>, street:<code>).
    Delegate {
        ticket: String,
        #[arg(long)]
        platform: String,
        #[arg(long)]
        reason: String,
    },
    /// What waits on the platform's desk now (soonest deadline first), then
    /// its changes as they come (one row each), as the platform desk.
    Queue {
        /// Show what waits now and stop, without watching.
        #[arg(long)]
        once: bool,
    },
    /// The revisit queue: what is due now (or all waiting, with --all), as an agent.
    Revisits {
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Take a ticket off other agents' queues while you call the citizen.
    Claim { ticket: String },
    /// Record a revisit: satisfied, unsatisfied (with --reason) or unreachable.
    Revisit {
        ticket: String,
        outcome: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Figures of a period as a table: per unit, per platform and city-wide.
    Figures {
        /// First day (YYYY-MM-DD, city time) or RFC 3339.
        #[arg(long)]
        from: String,
        /// Day after the last (exclusive).
        #[arg(long)]
        to: String,
        /// all, city, platforms or units.
        #[arg(long, default_value = "all")]
        scope: String,
        /// Only this platform or unit.
        #[arg(long, default_value = "")]
        code: String,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Report a ticket completed, as the unit it is assigned to (the token's unit).
    Complete {
        ticket: String,
        /// Optional: must be the token's unit.
        #[arg(long, default_value = "")]
        unit: String,
        #[arg(long)]
        result: String,
    },
}

fn utc_offset(s: &str) -> Result<time::UtcOffset, String> {
    time::UtcOffset::parse(s, time::macros::format_description!("[offset_hour]:[offset_minute]"))
        .map_err(|e| format!("{s:?} is not an offset like +08:00: {e}"))
}
