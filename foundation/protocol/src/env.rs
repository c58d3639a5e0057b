//! Every environment variable the Jarvis binaries read.
//!
//! The launcher reads the `JARVIS_HOME`/`JARVIS_BUNDLE_DIR`/... group so that
//! tests and portable installs can point it anywhere; the core reads only the
//! variables the launcher sets for it (`JARVIS_DATA_DIR` and friends).

/// Launcher: overrides the user-data folder (default: `SparkAI` under the
/// OS's roaming data directory). Tests and portable installs set it.
pub const HOME: &str = "JARVIS_HOME";

/// Launcher: overrides the app-bundle folder, where `jarvis-core` and a
/// bundled `redis-server` are looked for (default: the folder holding the
/// `jarvis` executable).
pub const BUNDLE_DIR: &str = "JARVIS_BUNDLE_DIR";

/// Launcher: path of a `redis-server` executable, tried after the app bundle
/// and before `PATH`.
pub const REDIS_SERVER: &str = "JARVIS_REDIS_SERVER";

/// Launcher and core: `tracing` filter for diagnostics (same syntax as
/// `RUST_LOG`, which is honoured when this is unset). Default: `info` into the
/// log files, `warn` on the terminal.
pub const LOG: &str = "JARVIS_LOG";

/// Core: the user-data folder. The core never creates it; the launcher does.
pub const DATA_DIR: &str = "JARVIS_DATA_DIR";

/// Core: the folder of installed models (`<data>/models`).
pub const MODELS_DIR: &str = "JARVIS_MODELS_DIR";

/// Core: `redis://user:password@127.0.0.1:port/0` of the launcher's Redis.
pub const REDIS_URL: &str = "JARVIS_REDIS_URL";

/// Core: the per-launch API token every client request must carry as
/// `Authorization: Bearer <token>`.
pub const API_TOKEN: &str = "JARVIS_API_TOKEN";

/// Core: the address to listen on, `127.0.0.1:<port>`; port `0` picks a free
/// one. Desktop mode accepts only loopback addresses; server mode any
/// (default `0.0.0.0:8080`).
pub const CORE_ADDR: &str = "JARVIS_CORE_ADDR";

/// Core: `desktop` (the default: one per-launch token, loopback only, the
/// launcher's Redis) or `server` (many users with API keys, any address,
/// any Redis or Redis Cluster, N replicas behind a load balancer).
pub const DEPLOYMENT: &str = "JARVIS_DEPLOYMENT";

/// Core: a PEM file of the certificate authority that signed the TLS
/// certificate of a `rediss://` Redis (unset: the system's roots).
pub const REDIS_CA_FILE: &str = "JARVIS_REDIS_CA_FILE";

/// Core: `1` treats a single `JARVIS_REDIS_URL` as the seed of a Redis
/// Cluster (a comma-separated list of URLs always is one).
pub const REDIS_CLUSTER: &str = "JARVIS_REDIS_CLUSTER";

/// Core: how many replicas of a Redis primary must have a write before the
/// core acknowledges it (`WAIT`; default 0). With 1 and a replica per
/// primary, a failover never loses an acknowledged write; a write that
/// misses its replicas for a second is answered 503 (it may be retried).
pub const REDIS_WAIT_REPLICAS: &str = "JARVIS_REDIS_WAIT_REPLICAS";

/// Core, server mode: comma-separated `Host` values requests may carry
/// (a name, or `name:port`); unset means any host (the balancer in front
/// decides). `/healthz` and `/readyz` answer any host, for probes.
pub const ALLOWED_HOSTS: &str = "JARVIS_ALLOWED_HOSTS";

/// Core, server mode: comma-separated origins (`https://app.example`)
/// browsers may call the API from (CORS); unset means none.
pub const ALLOWED_ORIGINS: &str = "JARVIS_ALLOWED_ORIGINS";

/// Core, server mode: comma-separated addresses or CIDR ranges of the
/// proxies whose `X-Forwarded-For`, `-Proto` and `-Host` are believed;
/// unset means none.
pub const TRUSTED_PROXIES: &str = "JARVIS_TRUSTED_PROXIES";

/// Core, server mode: requests one user may make per minute, over all
/// replicas (default 600; 0 turns the limit off).
pub const RATE_LIMIT_PER_MINUTE: &str = "JARVIS_RATE_LIMIT_PER_MINUTE";

/// Core, server mode: seconds a stopping replica waits for its running
/// turns to finish before it stops them (default 30).
pub const DRAIN_S: &str = "JARVIS_DRAIN_S";

/// Core (Unix): the number of an inherited file descriptor holding a
/// listening loopback TCP socket. The launcher binds the socket once and
/// hands it to every core it starts, so the address never changes across
/// restarts and no other process can take the port in between; when set,
/// [`CORE_ADDR`] is ignored.
pub const CORE_LISTEN_FD: &str = "JARVIS_CORE_LISTEN_FD";

/// Launcher: the model catalog to use instead of the built-in one: a file
/// path, a `file://` URL or an `http(s)://` URL.
pub const CATALOG: &str = "JARVIS_CATALOG";

/// Launcher: seconds without a single byte after which a download attempt
/// counts as stalled and is retried (default 30).
pub const DOWNLOAD_STALL_TIMEOUT: &str = "JARVIS_DOWNLOAD_STALL_TIMEOUT";

/// Core: comma-separated names of the models Jarvis requires, so `/readyz`
/// can say which are missing (set by the launcher from the catalog).
pub const REQUIRED_MODELS: &str = "JARVIS_REQUIRED_MODELS";

/// Launcher: root of the update feed (`<root>/<channel>/<target>/release.json`),
/// an `http(s)://` URL, a `file://` URL or a folder.
pub const UPDATE_URL: &str = "JARVIS_UPDATE_URL";

/// Launcher, debug builds only: extra ed25519 public keys (hex, comma
/// separated) trusted for releases besides the pinned ones; tests sign their
/// own releases with it. Release builds ignore it.
pub const UPDATE_TRUSTED_KEYS: &str = "JARVIS_UPDATE_TRUSTED_KEYS";

/// Launcher: seconds a version switched to by an update must run without
/// a restart of its core or Redis before the update is committed (old
/// versions removed, the launcher replaced); default 60. A crash loop
/// before then rolls the update back.
pub const UPDATE_PROBATION_S: &str = "JARVIS_UPDATE_PROBATION_S";

/// Launcher: set by a launcher that rolled an update back and started
/// itself again on the previous version; the new start opens no browser
/// (the UI is open already).
pub const RELAUNCHED: &str = "JARVIS_RELAUNCHED";

/// Launcher, tests only: abort the process (as if killed) when it reaches the
/// named checkpoint, so crash tests can stop it at an exact step.
pub const CRASH_AT: &str = "JARVIS_CRASH_AT";

/// Not ours: the Hugging Face hub client's offline switch. The launcher
/// sets it to `1` for the core, and the core sets it for itself, so the
/// model runtime never tries the network: models come only from
/// `JARVIS_MODELS_DIR`.
pub const HF_HUB_OFFLINE: &str = "HF_HUB_OFFLINE";

/// Launcher: `baseline` to run the baseline core even where an
/// x86-64-v3 build is installed and the CPU could run it.
pub const CORE_VARIANT: &str = "JARVIS_CORE_VARIANT";

/// Core: CPU threads the models may use (default: every core). Applies to
/// chat (the runtime's thread pool) and speech-to-text alike.
pub const THREADS: &str = "JARVIS_THREADS";

/// The folder the launcher serves the UI's files from (default: `ui/`
/// in the app version's folder).
pub const UI_DIR: &str = "JARVIS_UI_DIR";

/// The loopback port of the UI (default: a free one, chosen per launch).
pub const UI_PORT: &str = "JARVIS_UI_PORT";

/// Seconds an action request waits for the person's decision before the
/// launcher denies it (default 120): the gate fails closed.
pub const APPROVAL_TIMEOUT_S: &str = "JARVIS_APPROVAL_TIMEOUT_S";

/// The approval surface's loopback port (default: a free one).
pub const APPROVALS_PORT: &str = "JARVIS_APPROVALS_PORT";

/// A program that opens URLs and files instead of the OS handler
/// (`xdg-open`, `open`, `rundll32`); it gets the URL or path as its one
/// argument. For tests and unusual desktops.
pub const OPEN_COMMAND: &str = "JARVIS_OPEN_COMMAND";

/// A program that shows a desktop notification instead of the OS's
/// (`notify-send`, `osascript`); it gets a title and a body.
pub const NOTIFY_COMMAND: &str = "JARVIS_NOTIFY_COMMAND";
