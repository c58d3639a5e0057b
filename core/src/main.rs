//! `jarvis-core`: started by the `jarvis` launcher, never by hand in
//! production. See the library docs for its invariants.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use jarvis_core::config::{CoreConfig, Deployment, RedisConfig};
use jarvis_core::engines::Engines;
use jarvis_core::http::state::Access;
use jarvis_core::listen;
use jarvis_core::memory::Memory;
use jarvis_core::memory::Target;
use jarvis_core::memory::users::Revoked;
use jarvis_core::models::ModelDirectory;
use jarvis_core::{AppState, BUILD_NOTE, VERSION, run};
use jarvis_protocol::env;

fn main() -> ExitCode {
    // SAFETY: no other thread exists yet (the runtime starts below), so
    // nothing can read the environment while it changes.
    unsafe {
        std::env::set_var(env::HF_HUB_OFFLINE, "1");
        // The chat runtime's thread pool reads this when it first starts.
        if let Some(threads) = std::env::var(env::THREADS)
            .ok()
            .filter(|t| t.parse::<usize>().is_ok())
        {
            std::env::set_var("RAYON_NUM_THREADS", threads);
        }
    }
    init_tracing();
    // TLS to Redis (`rediss://`) uses rustls with ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let job = async {
        match args.first().map(String::as_str) {
            None => serve().await,
            Some("users") => users(&args[1..]).await,
            Some("--version" | "-V") => {
                println!("jarvis-core {VERSION}");
                Ok(())
            }
            Some(other) => Err(anyhow::anyhow!("unknown command '{other}'\n{USAGE}")),
        }
    };
    match runtime.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: jarvis-core                  serve (the launcher starts it; server mode: JARVIS_DEPLOYMENT=server)
       jarvis-core users add NAME    add a server user and print their new API key
       jarvis-core users list        list the server's users
       jarvis-core users revoke NAME revoke a user's key at once (their memory stays)";

/// Memory in the Redis `redis` describes, connecting in the background.
fn connect_memory(redis: &RedisConfig) -> anyhow::Result<Memory> {
    let ca = redis
        .ca_file
        .as_deref()
        .map(|path| {
            std::fs::read(path).with_context(|| {
                format!("could not read {} ({})", env::REDIS_CA_FILE, path.display())
            })
        })
        .transpose()?;
    let target = Target::parse(&redis.url, redis.cluster, ca)?;
    Ok(Memory::connect_target_in_background(target).with_replica_acks(redis.wait_replicas))
}

/// `jarvis-core users add|list|revoke`: server mode's accounts, in the
/// Redis that `JARVIS_REDIS_URL` names.
async fn users(args: &[String]) -> anyhow::Result<()> {
    let redis = RedisConfig::from_env(&|name: &str| std::env::var(name).ok()).context(
        "`jarvis-core users` reads the same Redis settings as the server (JARVIS_REDIS_URL, ...)",
    )?;
    let memory = connect_memory(&redis)?;
    memory
        .wait_connected(std::time::Duration::from_secs(15))
        .await
        .context("could not reach Redis within 15 s")?;
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["add", name] => {
            let (user, key) = memory.add_user(name).await?;
            eprintln!(
                "Added user '{}' (id {}). Their API key is below; it is shown only this once (only its hash is kept):",
                user.name,
                user.id.as_str()
            );
            println!("{key}");
        }
        ["list"] => {
            let accounts = memory.users().await?;
            if accounts.is_empty() {
                println!("no users yet; add one with `jarvis-core users add NAME`");
            }
            for account in accounts {
                let status = match &account.revoked_at {
                    Some(at) => format!("revoked {at}"),
                    None => "active".to_owned(),
                };
                println!(
                    "{:<24} {}  created {}  {status}",
                    account.name,
                    account.id.as_str(),
                    account.created_at
                );
            }
        }
        ["revoke", name] => match memory.revoke_user(name).await? {
            Revoked::Now => println!(
                "Revoked '{name}': their key stops working at once on every replica; their memory is kept."
            ),
            Revoked::Already => println!("'{name}' was revoked already."),
        },
        _ => anyhow::bail!("{USAGE}"),
    }
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let config = CoreConfig::from_env(|name| std::env::var(name).ok())
        .context("the core's environment is incomplete")?;
    tracing::info!(
        version = VERSION,
        build = BUILD_NOTE,
        ?config,
        "jarvis-core starting"
    );
    let listener = listen::listener(&config).await?;
    let addr = listener.local_addr().context("listener has no address")?;
    let memory = connect_memory(&config.redis).context("the Redis settings are not usable")?;
    let models = ModelDirectory::new(config.models_dir.clone(), config.required_models.clone());
    let engines = Engines::new(
        config.models_dir.clone(),
        config.required_models.clone(),
        memory.clone(),
        config.threads,
    );
    engines.start();
    let access = match &config.deployment {
        Deployment::Desktop => Access::Desktop {
            token: config.api_token.clone(),
            port: addr.port(),
        },
        Deployment::Server(settings) => Access::Server(settings.clone()),
    };
    let state = Arc::new(AppState::new(memory, models, engines, access));
    // The one line scripts and tests read to find an ephemeral port.
    println!("listening: http://{addr}");
    tracing::info!(%addr, "listening");
    run(listener, state, shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    tracing::info!("jarvis-core stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var(env::LOG)
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // The launcher sends stderr to <data>/logs/core.log.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
