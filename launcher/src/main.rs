//! `jarvis`, the Jarvis launcher: the orchestrator and gatekeeper.
//!
//! It owns the user-data folder, starts Redis and then the core, supervises
//! both and stops them in order. See `ARCHITECTURE.md` for the invariants.
//!
//! Layers run one way (top to bottom; `scripts/check-module-cycles`
//! enforces that no two modules import each other):
//! 1. Commands: this file (clap types, `report`) and [`cli`] (printing,
//!    `--json`).
//! 2. [`up`]: the start-up order.
//! 3. [`ui`]: the UI server (sign-in, the core behind it, downloads).
//! 4. Operations: [`updater`], [`supervisor`] (with [`model_events`]),
//!    [`maintenance`] (migrations, Redis for maintenance, the stopped
//!    lock), [`models`] (catalog, pull, import), [`doctor`].
//! 5. Foundations: [`install`] (the installed layout), [`paths`],
//!    [`config`], [`instance`], [`core_process`], [`shutdown`],
//!    [`progress`], [`logs`], [`secrets`], [`hint`].

mod cli;
mod config;
mod core_process;
mod detached;
mod doctor;
mod gate;
mod hint;
mod install;
mod instance;
mod logs;
mod maintenance;
mod model_events;
mod models;
mod paths;
mod progress;
mod release_config;
mod secrets;
mod shutdown;
mod supervisor;
mod ui;
mod up;
mod updater;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Jarvis, a local-first AI assistant.
#[derive(Debug, Parser)]
#[command(
    name = "jarvis",
    version,
    about = "Jarvis, a local-first AI assistant: start it, keep it updated, manage its models and data.",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Do not open the UI in a browser (for `jarvis` without a command).
    #[arg(long, global = false)]
    no_browser: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start Jarvis (Redis, then the core) and supervise it in the foreground.
    Up {
        /// Do not open the UI in a browser.
        #[arg(long)]
        no_browser: bool,
        /// Download missing required models (with progress) before starting.
        #[arg(long)]
        pull: bool,
    },
    /// Show whether Jarvis is running, with pids, ports and versions.
    Status {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Stop the running Jarvis gracefully.
    Stop,
    /// Open the running Jarvis' UI in the browser (prints a fresh sign-in URL).
    Open {
        /// Only print the sign-in URL.
        #[arg(long)]
        no_browser: bool,
    },
    /// Show where Jarvis keeps its data and finds its programs.
    Paths {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Check every prerequisite and say how to fix what fails.
    Doctor,
    /// The data folder's schema and its migrations.
    Migrate {
        #[command(subcommand)]
        command: cli::data::MigrateCommand,
    },
    /// Backups of settings and memory.
    Backup {
        #[command(subcommand)]
        command: cli::data::BackupCommand,
    },
    /// Signed updates of the app: check, apply, roll back.
    Update {
        #[command(subcommand)]
        command: cli::update::UpdateCommand,
    },
    /// Install, verify and switch local AI models.
    Models {
        #[command(subcommand)]
        command: cli::models::ModelsCommand,
    },
    /// Actions Jarvis asked for: list them, approve or deny them.
    Approvals {
        #[command(subcommand)]
        command: cli::approvals::ApprovalsCommand,
    },
    /// Standing permissions and allowed folders of the gatekeeper.
    Permissions {
        #[command(subcommand)]
        command: cli::approvals::PermissionsCommand,
    },
    /// Install the release an installer carries (installers run this).
    ///
    /// Into the install folder (`JARVIS_BUNDLE_DIR`, else this launcher's
    /// folder): the launcher if none is there, then the release, verified
    /// like an update, unless the install has it or a newer one.
    Install {
        /// The release folder (a feed) the installer carries.
        #[arg(long)]
        from: std::path::PathBuf,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Remove the installed app (uninstallers run this); your data stays.
    ///
    /// Removes the app versions and the launcher from the install folder.
    /// Models, memory and settings stay in the data folder, where a new
    /// install finds them, unless --remove-data is given.
    Uninstall {
        /// Also delete the data folder: models, memory, settings, logs.
        #[arg(long)]
        remove_data: bool,
        /// Leave the launcher file (an installer removes its own files).
        #[arg(long)]
        keep_launcher: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// The release keys and update feed this build was made with.
    BuildInfo {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Chat with the running Jarvis in the terminal (answers stream).
    Chat(cli::client::ChatArgs),
    /// Transcribe a WAV file with the running Jarvis.
    Transcribe(cli::client::TranscribeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    jarvis_download::install_crypto_provider();
    // One thread is enough for a supervisor, and it keeps the children's
    // parent-death signal tied to the thread that lives as long as we do.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(up::Finish::Exit(code)) => code,
        Ok(up::Finish::Relaunch) => {
            // Every socket, child and lock of this run closes first.
            drop(runtime);
            up::relaunch()
        }
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<up::Finish> {
    let paths = paths::AppPaths::resolve()?;
    // `up` logs to a file in the data folder once it exists; every other
    // command only to the terminal.
    if !matches!(cli.command, None | Some(Command::Up { .. })) {
        logs::init_terminal();
    }
    let code = match cli.command {
        None => {
            let options = up::UpOptions {
                no_browser: cli.no_browser,
                pull: false,
            };
            return up::up(paths, options).await;
        }
        Some(Command::Up { no_browser, pull }) => {
            let options = up::UpOptions {
                no_browser: no_browser || cli.no_browser,
                pull,
            };
            return up::up(paths, options).await;
        }
        Some(Command::Migrate { command }) => cli::data::migrate(&paths, command).await,
        Some(Command::Backup { command }) => cli::data::backup(&paths, command).await,
        Some(Command::Update { command }) => cli::update::run(&paths, command).await,
        Some(Command::Models { command }) => cli::models::run(&paths, command).await,
        Some(Command::Status { json }) => cli::info::status(&paths, json).await,
        Some(Command::Stop) => cli::info::stop(&paths).await,
        Some(Command::Open { no_browser }) => cli::info::open(&paths, no_browser).await,
        Some(Command::Paths { json }) => cli::info::paths(&paths, json),
        Some(Command::Doctor) => cli::info::doctor(&paths).await,
        Some(Command::Approvals { command }) => cli::approvals::approvals(&paths, command).await,
        Some(Command::Permissions { command }) => cli::approvals::permissions(&paths, command),
        Some(Command::Install { from, json }) => cli::update::install(&paths, &from, json).await,
        Some(Command::Uninstall {
            remove_data,
            keep_launcher,
            json,
        }) => cli::uninstall::uninstall(&paths, remove_data, keep_launcher, json),
        Some(Command::BuildInfo { json }) => {
            let info = release_config::build_info();
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                let keys = release_config::built_in_keys();
                println!("jarvis {} ({})", VERSION, jarvis_dist::TARGET);
                if keys.is_empty() {
                    println!("release keys: none (this build cannot accept updates)");
                }
                for key in keys {
                    println!("release key: {key}");
                }
                println!(
                    "update feed: {}",
                    release_config::built_in_feed().unwrap_or("none (set JARVIS_UPDATE_URL)")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Chat(args)) => cli::client::chat(&paths, args).await,
        Some(Command::Transcribe(args)) => cli::client::transcribe(&paths, args).await,
    };
    code.map(up::Finish::Exit)
}

/// The one place errors reach the user: `error:`, then each cause, then
/// every hint that applies anywhere in the chain, once ([`hint::hints`]).
fn report(error: &anyhow::Error) {
    // Into the log file only: the terminal gets the lines below.
    tracing::info!("command failed: {error:#}");
    eprintln!("error: {error}");
    for cause in error.chain().skip(1) {
        eprintln!("caused by: {cause}");
    }
    for hint in hint::hints(error) {
        eprintln!("hint: {hint}");
    }
}
