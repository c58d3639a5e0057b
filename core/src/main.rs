//! `jarvis-core`: started by the `jarvis` launcher, never by hand in
//! production. See the library docs for its invariants.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use jarvis_core::config::CoreConfig;
use jarvis_core::engines::Engines;
use jarvis_core::listen;
use jarvis_core::memory::Memory;
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
    match runtime.block_on(serve()) {
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
    let memory = Memory::connect_in_background(config.redis_url.clone())
        .context("the Redis URL is not valid")?;
    let models = ModelDirectory::new(config.models_dir.clone(), config.required_models.clone());
    let engines = Engines::new(
        config.models_dir.clone(),
        config.required_models.clone(),
        memory.clone(),
        config.threads,
    );
    engines.start();
    let state = Arc::new(AppState::new(
        memory,
        models,
        engines,
        config.api_token.clone(),
        addr.port(),
    ));
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
