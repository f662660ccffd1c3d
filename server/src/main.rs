//! `tidesync-server`: command line front of the reference backend.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use tidesync_server::{parse_users, AuthConfig, Config, Rate, RateLimits, Server};

const USAGE: &str = "\
tidesync-server: reference REST + batch sync backend for tidesync

USAGE:
    tidesync-server [--port N] [--host HOST] [--data-dir DIR] [--static DIR] [--users LIST]
                    [--demo-users] [--token-ttl SECS] [--rate-limit R[:B]] [--address-rate-limit R[:B]]
                    [--admin]

OPTIONS:
    --port N                  port to listen on; 0 (the default) picks a free port
    --host HOST               address to bind (default 127.0.0.1)
    --data-dir DIR            directory for tidesync.db; reuse it to keep data across restarts
                              (default: a fresh temporary directory, deleted on exit)
    --static DIR              serve DIR at / (index.html fallback for unknown paths)
    --users LIST              who may sign in at POST /auth/token: name:password,name:password
                              (also read from TIDESYNC_USERS; both lists are used)
    --demo-users              add the demo users alice:alice and bob:bob (never in production)
    --token-ttl SECS          lifetime of the tokens /auth/token signs (default 3600)
    --rate-limit R[:B]        per user: R requests per second, bursts of B (default 100:300; off)
    --address-rate-limit R[:B]
                              per client address, /api/ and /auth/ (default 300:900; off)
    --admin                   mount /admin/* (reset, stats, ledger, faults, token minting, limits):
                              for tests and the demo; without it those paths are 404
    -h, --help                print this help

ENVIRONMENT:
    TIDESYNC_JWT_SECRET       the HS256 signing secret, at least 32 bytes. Unset: a random
                              development secret is generated and printed on stderr (tokens then
                              die with the process)
    TIDESYNC_USERS            as --users

The first line on stdout is `tidesync-server listening on http://HOST:PORT`.";

struct Args {
    config: Config,
    temporary_data_dir: bool,
    generated_secret: bool,
}

/// The flags as given, before the secret and the defaults are filled in.
#[derive(Default)]
struct Flags {
    host: Option<String>,
    port: u16,
    data_dir: Option<PathBuf>,
    static_dir: Option<PathBuf>,
    users: Vec<(String, String)>,
    demo_users: bool,
    token_ttl: Option<i64>,
    limits: RateLimits,
    heartbeat_ms: Option<u64>,
    admin: bool,
}

impl Flags {
    /// One `--name` (`value` gives its argument, if it takes one).
    fn apply(&mut self, name: &str, mut value: impl FnMut() -> Result<String, String>) -> Result<(), String> {
        match name {
            "--port" => {
                let text = value()?;
                self.port = text.parse().map_err(|_| format!("invalid port: {text}"))?;
            }
            "--host" => self.host = Some(value()?),
            "--data-dir" => self.data_dir = Some(PathBuf::from(value()?)),
            "--static" => self.static_dir = Some(PathBuf::from(value()?)),
            "--users" => self.users.extend(parse_users(&value()?)?),
            "--demo-users" => self.demo_users = true,
            "--token-ttl" => {
                let text = value()?;
                let ttl = text.parse().ok().filter(|t| *t > 0);
                self.token_ttl = Some(ttl.ok_or_else(|| format!("invalid --token-ttl: {text}"))?);
            }
            "--rate-limit" => self.limits.user = Rate::parse(&value()?)?,
            "--address-rate-limit" => self.limits.address = Rate::parse(&value()?)?,
            "--admin" => self.admin = true,
            "--heartbeat-ms" => {
                let text = value()?;
                let ms = text.parse().ok().filter(|ms| *ms > 0);
                self.heartbeat_ms = Some(ms.ok_or_else(|| format!("invalid --heartbeat-ms: {text}"))?);
            }
            _ => return Err(format!("unknown argument: {name}")),
        }
        Ok(())
    }
}

/// The signing secret from `TIDESYNC_JWT_SECRET`, or a random one (`true`: generated).
fn secret() -> Result<(Vec<u8>, bool), String> {
    if let Ok(text) = std::env::var("TIDESYNC_JWT_SECRET") {
        return Ok((text.into_bytes(), false));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| format!("no random source for a development secret: {err}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex.into_bytes(), true))
}

fn temporary_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "tidesync-server-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut flags = Flags::default();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_owned(), Some(value.to_owned())),
            _ => (arg, None),
        };
        if name == "-h" || name == "--help" {
            return Ok(None);
        }
        let mut inline = inline;
        let value = || inline.take().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"));
        flags.apply(&name, value)?;
    }
    if let Ok(text) = std::env::var("TIDESYNC_USERS") {
        flags.users.extend(parse_users(&text).map_err(|err| format!("TIDESYNC_USERS: {err}"))?);
    }
    let (secret, generated_secret) = secret()?;
    let mut auth = AuthConfig::new(secret).map_err(|err| format!("TIDESYNC_JWT_SECRET: {err}"))?;
    auth.users = flags.users;
    if flags.demo_users {
        auth = auth.with_demo_users();
    }
    auth.token_ttl_secs = flags.token_ttl.unwrap_or(auth.token_ttl_secs);
    let temporary_data_dir = flags.data_dir.is_none();
    let mut config = Config::new(flags.data_dir.unwrap_or_else(temporary_dir), auth);
    config.host = flags.host.unwrap_or(config.host);
    config.port = flags.port;
    config.static_dir = flags.static_dir;
    config.admin = flags.admin;
    config.limits = flags.limits;
    config.heartbeat = flags.heartbeat_ms.map_or(config.heartbeat, std::time::Duration::from_millis);
    Ok(Some(Args { config, temporary_data_dir, generated_secret }))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// What an operator should know at start: the secret if it was made up, who may sign in, and
/// whether the admin routes are open.
fn report_setup(args: &Args) {
    let auth = &args.config.auth;
    if args.generated_secret {
        let secret = String::from_utf8_lossy(&auth.secret);
        eprintln!("TIDESYNC_JWT_SECRET is not set: development secret {secret} (tokens end with this process)");
    }
    let names: Vec<&str> = auth.users.iter().map(|(name, _)| name.as_str()).collect();
    eprintln!("users who may sign in: {}", if names.is_empty() { "none".into() } else { names.join(", ") });
    if args.config.admin {
        eprintln!("--admin: /admin/* is open to anyone who can reach this address (tests and demos only)");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server = match Server::start(&args.config).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("error: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts read this line to learn the URL, so it goes out first and unbuffered.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "tidesync-server listening on {}", server.url());
    let _ = stdout.flush();
    eprintln!("data directory: {}", args.config.data_dir.display());
    report_setup(&args);

    shutdown_signal().await;
    eprintln!("shutting down");
    let result = server.stop().await;
    if args.temporary_data_dir {
        let _ = std::fs::remove_dir_all(&args.config.data_dir);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
