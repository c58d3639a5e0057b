//! `jarvis-dist`: make keys, version folders and signed release feeds.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use jarvis_dist::feed::{self, ReleaseOptions, VersionInfo};
use jarvis_dist::installer::{Compression, SignedRelease};
use jarvis_dist::manifest::{AppVersion, SchemaRange};
use jarvis_dist::signing;
use jarvis_durable::{Visibility, write_atomic};

/// Release tooling for Jarvis.
#[derive(Debug, Parser)]
#[command(name = "jarvis-dist", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make an ed25519 key pair: OUT/release.key (secret) and OUT/release.pub.
    Keygen { out: PathBuf },
    /// Assemble a version folder from built binaries and assets.
    Bundle {
        #[arg(long)]
        version: AppVersion,
        #[arg(long, default_value = "stable")]
        channel: String,
        #[arg(long, default_value = env!("JARVIS_DIST_TARGET"))]
        target: String,
        /// The jarvis-core binary (baseline x86-64, runs everywhere).
        #[arg(long)]
        core: PathBuf,
        /// The jarvis-core binary built with `-C target-cpu=x86-64-v3`;
        /// the launcher runs it where the CPU can (much faster models).
        #[arg(long = "core-x86-64-v3")]
        core_v3: Option<PathBuf>,
        /// A redis-server to ship in the bundle.
        #[arg(long)]
        redis: Option<PathBuf>,
        /// The `jarvis` launcher to ship; installs replace themselves with
        /// it once this version has started successfully.
        #[arg(long)]
        launcher: Option<PathBuf>,
        /// The built UI (`launcher/ui/dist`): shipped as `ui/` in the
        /// version folder, so each app version brings its own UI.
        #[arg(long)]
        ui: Option<PathBuf>,
        /// Extra files as PATH_IN_BUNDLE=SOURCE (tools).
        #[arg(long = "file")]
        files: Vec<String>,
        #[arg(long, default_value_t = 2)]
        schema_min: u32,
        #[arg(long, default_value_t = 2)]
        schema_max: u32,
        #[arg(long)]
        out: PathBuf,
    },
    /// Publish a version folder into a feed: full files, deltas from the
    /// previous version folders, an archive and the signed manifest.
    Release {
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long)]
        previous: Vec<PathBuf>,
        #[arg(long)]
        feed: PathBuf,
        /// The secret key file from `keygen`.
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value_t = 90)]
        expires_in_days: i64,
        /// Already expired (for tests of the freeze defence).
        #[arg(long, hide = true)]
        expired: bool,
        #[arg(long, default_value = "0.1.0")]
        min_launcher_version: AppVersion,
        #[arg(long, default_value_t = 100)]
        rollout_percent: u8,
        /// zstd level of the patches: 19 makes the smallest downloads;
        /// lower levels release faster (test feeds use 3).
        #[arg(long, default_value_t = jarvis_dist::delta::DEFAULT_LEVEL,
              value_parser = clap::value_parser!(i32).range(1..=22))]
        level: i32,
    },
    /// Make an installer of a published release (one format at a time).
    Installer {
        #[command(subcommand)]
        format: InstallerFormat,
    },
    /// Refuse to ship a launcher that could not accept this release's
    /// updates: it must trust at least one key, and only keys whose
    /// private halves are given with --key (the primary and the one it
    /// rotates to), never the public test key; a release build with a feed.
    CheckLauncher {
        /// The `jarvis` binary to check (it is run: `jarvis build-info --json`).
        #[arg(long)]
        launcher: PathBuf,
        /// A secret key file from `keygen`; once per trusted key.
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        /// Accept the test suite's own launchers (test key, debug build).
        #[arg(long, hide = true)]
        for_tests: bool,
    },
}

#[derive(Debug, Subcommand)]
enum InstallerFormat {
    /// A type-2 AppImage (Linux): installs the release into the install
    /// folder on first launch, then runs and updates from there.
    Appimage {
        #[command(flatten)]
        release: ReleaseArgs,
        /// The AppImage runtime (scripts/fetch-appimage-runtime).
        #[arg(long)]
        runtime: PathBuf,
    },
    /// A per-machine Debian package (Linux): /usr/lib/jarvis, updated by
    /// apt, never by Jarvis itself.
    Deb {
        #[command(flatten)]
        release: ReleaseArgs,
        #[arg(
            long,
            default_value = "Jarvis developers <releases@jarvis-assistant.org>"
        )]
        maintainer: String,
        /// Compress quickly (gzip -1) instead of best (xz -9): for tests.
        #[arg(long)]
        fast: bool,
    },
    /// A .tar.gz with a shell installer (Linux, macOS): per-user, no root.
    Tar {
        #[command(flatten)]
        release: ReleaseArgs,
    },
    /// Jarvis.app in a disk image (macOS; the image needs hdiutil).
    Dmg {
        #[command(flatten)]
        release: ReleaseArgs,
        /// Write the image's folder (Jarvis.app, Applications link)
        /// instead of the image: what a machine without hdiutil can do.
        #[arg(long)]
        app_only: bool,
    },
    /// A per-user Windows Installer package (no elevation), with wixl.
    Msi {
        #[command(flatten)]
        release: ReleaseArgs,
    },
    /// A per-user Setup.exe (no elevation; /S for silent), with makensis.
    Nsis {
        #[command(flatten)]
        release: ReleaseArgs,
        /// Compress quickly (zlib) instead of best (solid LZMA): for tests.
        #[arg(long)]
        fast: bool,
    },
}

/// Which published release an installer carries, and where it goes.
#[derive(Debug, clap::Args)]
struct ReleaseArgs {
    /// The feed the release was published into (`release --feed`).
    #[arg(long)]
    feed: PathBuf,
    #[arg(long, default_value = "stable")]
    channel: String,
    #[arg(long, default_value = env!("JARVIS_DIST_TARGET"))]
    target: String,
    /// The folder the installer is written to.
    #[arg(long)]
    out: PathBuf,
}

impl ReleaseArgs {
    fn load(&self) -> anyhow::Result<SignedRelease> {
        Ok(SignedRelease::load(
            &self.feed,
            &self.channel,
            &self.target,
        )?)
    }
}

fn compression(fast: bool) -> Compression {
    if fast {
        Compression::Fast
    } else {
        Compression::Best
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Every file under the built UI folder, as (`a/b.js`, its path), sorted.
fn ui_files(dir: &std::path::Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    if !dir.join("index.html").is_file() {
        anyhow::bail!(
            "{} is not a built UI (no index.html); run scripts/build-ui",
            dir.display()
        );
    }
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder)
            .with_context(|| format!("could not read {}", folder.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)?
                    .to_str()
                    .context("UI file names must be UTF-8")?
                    .replace('\\', "/");
                found.push((rel, path));
            }
        }
    }
    found.sort();
    Ok(found)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Installer { format } => {
            let path = match format {
                InstallerFormat::Appimage { release, runtime } => {
                    jarvis_dist::appimage::build(&release.load()?, &runtime, &release.out)?
                }
                InstallerFormat::Deb {
                    release,
                    maintainer,
                    fast,
                } => jarvis_dist::deb::build(
                    &release.load()?,
                    &maintainer,
                    compression(fast),
                    &release.out,
                )?,
                InstallerFormat::Tar { release } => {
                    jarvis_dist::tarball::build(&release.load()?, &release.out)?
                }
                InstallerFormat::Dmg { release, app_only } => {
                    jarvis_dist::dmg::build(&release.load()?, app_only, &release.out)?
                }
                InstallerFormat::Msi { release } => {
                    jarvis_dist::msi::build(&release.load()?, &release.out)?
                }
                InstallerFormat::Nsis { release, fast } => {
                    jarvis_dist::nsis::build(&release.load()?, compression(fast), &release.out)?
                }
            };
            println!("{}", path.display());
        }
        Command::CheckLauncher {
            launcher,
            keys,
            for_tests,
        } => {
            let out = std::process::Command::new(&launcher)
                .args(["build-info", "--json"])
                .output()
                .with_context(|| format!("could not run {}", launcher.display()))?;
            if !out.status.success() {
                anyhow::bail!(
                    "{} build-info failed: {}",
                    launcher.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let info: jarvis_dist::release_check::BuildInfo =
                serde_json::from_slice(&out.stdout)
                    .context("the launcher's build-info is not what this jarvis-dist reads")?;
            let mut secret = Vec::new();
            for path in &keys {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("could not read {}", path.display()))?;
                secret.push(signing::signing_key(&text)?);
            }
            let policy = jarvis_dist::release_check::Policy { for_tests };
            let problems = jarvis_dist::release_check::problems(&info, &secret, policy);
            if !problems.is_empty() {
                anyhow::bail!(
                    "{} (jarvis {}) must not be shipped:\n  - {}",
                    launcher.display(),
                    info.version,
                    problems.join("\n  - ")
                );
            }
            println!(
                "{} (jarvis {}) trusts {} release key(s), all held; feed {}",
                launcher.display(),
                info.version,
                info.release_keys.len(),
                info.update_feed.as_deref().unwrap_or("none")
            );
        }
        Command::Keygen { out } => {
            std::fs::create_dir_all(&out)?;
            let key = signing::generate()?;
            write_atomic(
                "signing key",
                &out.join("release.key"),
                signing::to_hex(&key.to_bytes()).as_bytes(),
                Visibility::OwnerOnly,
            )?;
            let public = signing::to_hex(key.verifying_key().as_bytes());
            write_atomic(
                "public key",
                &out.join("release.pub"),
                public.as_bytes(),
                Visibility::Normal,
            )?;
            println!("{public}");
        }
        Command::Bundle {
            version,
            channel,
            target,
            core,
            core_v3,
            redis,
            launcher,
            ui,
            files,
            schema_min,
            schema_max,
            out,
        } => {
            let exe = jarvis_dist::exe_suffix(&target);
            let mut list = vec![(format!("jarvis-core{exe}"), core, true)];
            if let Some(core_v3) = core_v3 {
                list.push((format!("jarvis-core-x86-64-v3{exe}"), core_v3, true));
            }
            if let Some(redis) = redis {
                list.push((format!("redis-server{exe}"), redis, true));
            }
            if let Some(launcher) = launcher {
                list.push((format!("jarvis{exe}"), launcher, true));
            }
            if let Some(ui) = ui {
                list.extend(
                    ui_files(&ui)?
                        .into_iter()
                        .map(|(rel, source)| (format!("ui/{rel}"), source, false)),
                );
            }
            for spec in files {
                let (path, source) = spec
                    .split_once('=')
                    .context("--file takes PATH_IN_BUNDLE=SOURCE")?;
                list.push((path.to_owned(), PathBuf::from(source), false));
            }
            let info = VersionInfo {
                version,
                channel,
                target,
                data_schema: SchemaRange {
                    min: schema_min,
                    max: schema_max,
                },
            };
            feed::bundle(&out, &info, &list)?;
            println!("{}", out.display());
        }
        Command::Release {
            bundle,
            previous,
            feed: feed_root,
            key,
            expires_in_days,
            expired,
            min_launcher_version,
            rollout_percent,
            level,
        } => {
            let key_text = std::fs::read_to_string(&key)
                .with_context(|| format!("could not read the key '{}'", key.display()))?;
            let key = signing::signing_key(&key_text)?;
            let expires_at = if expired {
                jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)
            } else {
                jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * expires_in_days)
            };
            let release = feed::release(&ReleaseOptions {
                bundle: &bundle,
                previous: &previous,
                feed_root: &feed_root,
                key: &key,
                expires_at,
                min_launcher_version,
                rollout_percent,
                level,
            })?;
            println!("{}", serde_json::to_string_pretty(&release)?);
        }
    }
    Ok(())
}
