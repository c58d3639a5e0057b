//! Where Jarvis keeps things: the user-data folder and the app bundle.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use jarvis_durable::create_private_dir_all;
use jarvis_protocol::{env, instance};
use serde::Serialize;

use crate::hint::hinted;
use crate::install::AppChoice;

/// The user-data folder's name under the OS's roaming data directory.
pub const DATA_FOLDER_NAME: &str = "SparkAI";

/// The core's executable name on this OS.
/// The core built for x86-64-v3 CPUs, shipped beside the baseline one.
pub const CORE_V3_BINARY_NAME: &str = if cfg!(windows) {
    "jarvis-core-x86-64-v3.exe"
} else {
    "jarvis-core-x86-64-v3"
};

/// The launcher's executable name on this OS (`<install>/jarvis`).
pub const LAUNCHER_BINARY_NAME: &str = if cfg!(windows) {
    "jarvis.exe"
} else {
    "jarvis"
};

pub const CORE_BINARY_NAME: &str = if cfg!(windows) {
    "jarvis-core.exe"
} else {
    "jarvis-core"
};

/// Every location the launcher uses.
#[derive(Debug, Clone, Serialize)]
pub struct AppPaths {
    pub data_dir: PathBuf,
    pub models_dir: PathBuf,
    pub redis_dir: PathBuf,
    pub memory_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub run_dir: PathBuf,
    pub config_file: PathBuf,
    pub bundle_dir: PathBuf,
}

impl AppPaths {
    /// Resolves paths from the environment (`JARVIS_HOME`,
    /// `JARVIS_BUNDLE_DIR`) and the OS; creates nothing.
    pub fn resolve() -> anyhow::Result<Self> {
        let data_dir = match std::env::var_os(env::HOME).filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home),
            None => directories::BaseDirs::new()
                .context(
                    "could not find your home folder to place Jarvis' data in; set JARVIS_HOME",
                )?
                .data_dir()
                .join(DATA_FOLDER_NAME),
        };
        let data_dir = absolute(&data_dir)?;
        let bundle_dir = match std::env::var_os(env::BUNDLE_DIR).filter(|v| !v.is_empty()) {
            Some(dir) => absolute(Path::new(&dir))?,
            None => std::env::current_exe()
                .context("could not find the jarvis executable's own path")?
                .parent()
                .context("the jarvis executable has no parent folder")?
                .to_owned(),
        };
        Ok(Self::new(data_dir, bundle_dir))
    }

    pub fn new(data_dir: PathBuf, bundle_dir: PathBuf) -> Self {
        Self {
            models_dir: data_dir.join(jarvis_model_registry::MODELS_DIR_NAME),
            redis_dir: data_dir.join("redis"),
            memory_dir: data_dir.join("memory"),
            logs_dir: data_dir.join("logs"),
            run_dir: data_dir.join("run"),
            config_file: data_dir.join("config.json"),
            data_dir,
            bundle_dir,
        }
    }

    /// Creates the data tree (owner-only on Unix); existing folders stay.
    pub fn create_tree(&self) -> anyhow::Result<()> {
        for (role, dir) in [
            ("data folder", &self.data_dir),
            ("models folder", &self.models_dir),
            ("Redis folder", &self.redis_dir),
            ("memory folder", &self.memory_dir),
            ("logs folder", &self.logs_dir),
            ("run folder", &self.run_dir),
        ] {
            create_private_dir_all(role, dir)?;
        }
        Ok(())
    }

    pub fn instance_file(&self) -> PathBuf {
        self.run_dir.join(instance::FILE_NAME)
    }

    pub fn token_file(&self) -> PathBuf {
        self.run_dir.join(instance::TOKEN_FILE_NAME)
    }

    pub fn lock_file(&self) -> PathBuf {
        self.run_dir.join("launcher.lock")
    }

    pub fn redis_pid_file(&self) -> PathBuf {
        self.run_dir.join("redis.pid")
    }

    /// The core executable of `app` (a version folder, or the launcher's
    /// own folder in a development checkout). In an installed version only
    /// a program its signed manifest lists is ever chosen.
    ///
    /// Where the folder also holds a core built for x86-64-v3 (AVX2, FMA:
    /// the model runtimes pick their SIMD kernels at compile time, so it
    /// decodes several times faster) and this CPU has those features, that
    /// build is used; `JARVIS_CORE_VARIANT=baseline` forces the other.
    pub fn require_core_binary(&self, app: &AppChoice) -> anyhow::Result<PathBuf> {
        let dir = &app.dir;
        let path = dir.join(CORE_BINARY_NAME);
        let fast = dir.join(CORE_V3_BINARY_NAME);
        let forced_baseline = std::env::var(env::CORE_VARIANT).is_ok_and(|v| v == "baseline");
        if app.may_run(CORE_V3_BINARY_NAME)
            && fast.is_file()
            && !forced_baseline
            && cpu_has_x86_64_v3()
        {
            tracing::debug!(core = %fast.display(), "using the x86-64-v3 core");
            return Ok(fast);
        }
        if !app.may_run(CORE_BINARY_NAME) {
            return Err(hinted(
                format!(
                    "Jarvis {} lists no {CORE_BINARY_NAME} in its signed release",
                    app.version.map(|v| v.to_string()).unwrap_or_default()
                ),
                "reinstall Jarvis; your data is untouched",
            ));
        }
        if !path.is_file() {
            return Err(hinted(
                format!("jarvis-core was not found at '{}'", path.display()),
                format!(
                    "reinstall Jarvis; in a development checkout run `cargo build -p jarvis-core`, \
                     or point {} at the folder that holds it",
                    env::BUNDLE_DIR
                ),
            ));
        }
        Ok(path)
    }

    /// The `redis-server` to run: the one in `app`'s folder where it may
    /// run it (listed in its signed release; anything in a development
    /// checkout), else `JARVIS_REDIS_SERVER`, else `PATH`.
    pub fn locate_redis(
        &self,
        app: &AppChoice,
    ) -> Result<PathBuf, jarvis_redis_bundle::RedisError> {
        let bundled = app
            .may_run(jarvis_redis_bundle::BINARY_NAME)
            .then_some(app.dir.as_path());
        jarvis_redis_bundle::locate(
            bundled,
            env::REDIS_SERVER,
            std::env::var_os(env::REDIS_SERVER).map(PathBuf::from),
            std::env::var_os("PATH"),
        )
    }
}

/// Whether this CPU runs x86-64-v3 code (AVX, AVX2, BMI1/2, F16C, FMA,
/// LZCNT, MOVBE, XSAVE).
fn cpu_has_x86_64_v3() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("f16c")
            && std::arch::is_x86_feature_detected!("lzcnt")
            && std::arch::is_x86_feature_detected!("movbe")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path)
        .with_context(|| format!("could not make '{}' absolute", path.display()))
}
