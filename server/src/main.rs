//! `tidesync-server`: command line front of the reference backend.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use tidesync_server::{Config, Server};

const USAGE: &str = "\
tidesync-server: reference REST + batch sync backend for tidesync

USAGE:
    tidesync-server [--port N] [--host HOST] [--data-dir DIR] [--static DIR]

OPTIONS:
    --port N          port to listen on; 0 (the default) picks a free port
    --host HOST       address to bind (default 127.0.0.1)
    --data-dir DIR    directory for tidesync.db; reuse it to keep data across restarts
                      (default: a fresh temporary directory, deleted on exit)
    --static DIR      serve DIR at / (index.html fallback for unknown paths)
    -h, --help        print this help

The first line on stdout is `tidesync-server listening on http://HOST:PORT`.";

struct Args {
    config: Config,
    temporary_data_dir: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut host = "127.0.0.1".to_owned();
    let mut port = 0u16;
    let mut data_dir = None;
    let mut static_dir = None;
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_owned(), Some(value.to_owned())),
            _ => (arg, None),
        };
        if name == "-h" || name == "--help" {
            return Ok(None);
        }
        let mut value = || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"));
        match name.as_str() {
            "--port" => {
                let text = value()?;
                port = text.parse().map_err(|_| format!("invalid port: {text}"))?;
            }
            "--host" => host = value()?,
            "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
            "--static" => static_dir = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument: {name}")),
        }
    }
    let temporary_data_dir = data_dir.is_none();
    let data_dir = data_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "tidesync-server-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ))
    });
    Ok(Some(Args { config: Config { host, port, data_dir, static_dir }, temporary_data_dir }))
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
