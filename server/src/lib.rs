//! The tidesync reference backend: sign-in with HS256 JWTs, a batch sync endpoint, plain REST
//! CRUD, a change feed for pulls and an idempotency ledger, all per user, rate limits, and (only
//! with `--admin`) inspection and fault injection for tests.
//!
//! The contract (every endpoint and shape) is in this crate's README.

mod access;
mod admin;
mod auth;
mod batch;
mod body;
mod clock;
mod error;
mod faults;
mod jwt;
mod live;
mod rest;
mod store;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, Method, StatusCode};
use axum::response::Response;
use axum::routing::MethodRouter;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};

pub use access::{Rate, RateLimits};
pub use auth::{parse_users, AuthConfig, DEFAULT_TOKEN_TTL_SECS, DEMO_USERS};
pub use body::MAX_BODY_BYTES;
pub use faults::{FaultConfig, MalformedKind};
pub use jwt::{MAX_TOKEN_BYTES, MIN_SECRET_BYTES};
pub use live::{DEFAULT_HEARTBEAT, SOCKET_PATH, STREAM_PATH};
pub use store::DB_FILE;

use error::ApiError;

/// Longest collection name, record id or operation id accepted.
pub const MAX_NAME_LEN: usize = 200;

/// Whether `path` is `prefix` or below it (`/api` and `/api/x`, not `/apix`).
pub(crate) fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

pub(crate) fn valid_name(value: &str) -> bool {
    !value.is_empty() && value.chars().count() <= MAX_NAME_LEN
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    /// Holds `tidesync.db`; reusing the directory keeps all data across restarts.
    pub data_dir: PathBuf,
    /// Served at `/` with an `index.html` fallback when set.
    pub static_dir: Option<PathBuf>,
    /// Mounts `/admin/*` (inspection, reset, faults, token minting), for tests and the demo. Off,
    /// those paths do not exist (404).
    pub admin: bool,
    pub auth: AuthConfig,
    pub limits: RateLimits,
    /// How often an idle push channel sends a heartbeat.
    pub heartbeat: Duration,
}

impl Config {
    /// Loopback, a free port, no static site, no admin routes, default limits.
    pub fn new(data_dir: PathBuf, auth: AuthConfig) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            data_dir,
            static_dir: None,
            admin: false,
            auth,
            limits: RateLimits::default(),
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

pub struct AppState {
    store: Arc<store::Store>,
    faults: Mutex<FaultConfig>,
    requests: AtomicU64,
    auth: AuthConfig,
    /// The limits in force (`/admin/limits` may change them) and the configured ones.
    limits: Mutex<RateLimits>,
    configured_limits: RateLimits,
    limiter: access::Limiter,
    unauthorized: AtomicU64,
    rate_limited: AtomicU64,
    /// The push channels.
    live: live::Hub,
}

impl AppState {
    /// Opens (or creates) the database in `config.data_dir`.
    pub fn open(config: &Config) -> Result<Arc<Self>, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(StartError::Io)?;
        let store = store::Store::open(&config.data_dir).map_err(StartError::Db)?;
        Ok(Arc::new(Self {
            store: Arc::new(store),
            faults: Mutex::new(FaultConfig::default()),
            requests: AtomicU64::new(0),
            auth: config.auth.clone(),
            limits: Mutex::new(config.limits),
            configured_limits: config.limits,
            limiter: access::Limiter::default(),
            unauthorized: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            live: live::Hub::new(config.heartbeat),
        }))
    }
}

#[derive(Debug)]
pub enum StartError {
    Io(std::io::Error),
    Db(rusqlite::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(err) => write!(f, "i/o error: {err}"),
            Self::Db(err) => write!(f, "database error: {err}"),
        }
    }
}

impl std::error::Error for StartError {}

async fn not_found() -> Response {
    axum::response::IntoResponse::into_response(ApiError::not_found("no such endpoint"))
}

/// Unrouted paths: the static site, except under `/api`, `/auth` and `/admin`, which stay JSON
/// even when a site is served (an SPA fallback would answer a mistyped API path, or an admin route
/// of a server started without `--admin`, with `index.html` and a 200).
async fn serve_static(mut site: ServeDir<ServeFile>, req: Request) -> Response {
    let path = req.uri().path();
    if ["/api", "/auth", "/admin"].iter().any(|prefix| under(path, prefix)) {
        return not_found().await;
    }
    match site.try_call(req).await {
        Ok(response) => response.map(Body::new),
        Err(err) => {
            axum::response::IntoResponse::into_response(ApiError::internal(format!("static file error: {err}")))
        }
    }
}

async fn method_not_allowed() -> Response {
    axum::response::IntoResponse::into_response(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "method not allowed",
    ))
}

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-operation-id"),
            HeaderName::from_static("x-device-id"),
            HeaderName::from_static("x-client-version"),
            HeaderName::from_static("x-tidesync-version"),
            HeaderName::from_static("last-event-id"),
            header::IF_MATCH,
        ])
        .expose_headers([header::ETAG, header::RETRY_AFTER])
}

/// `/admin/*`: mounted only with `Config::admin`.
fn admin_routes() -> [(&'static str, MethodRouter<Arc<AppState>>); 7] {
    [
        ("/admin/faults", get(faults::get_config).post(faults::set_config).delete(faults::clear_config)),
        ("/admin/ledger", get(admin::ledger)),
        ("/admin/stats", get(admin::stats)),
        ("/admin/reset", post(admin::reset)),
        ("/admin/tokens", post(auth::mint)),
        ("/admin/limits", get(admin::get_limits).post(admin::set_limits)),
        ("/admin/streams/cut", post(live::cut)),
    ]
}

/// The whole application. `static_dir` is served at `/` for anything no route claims.
pub fn app(state: Arc<AppState>, static_dir: Option<&Path>, admin: bool) -> Router {
    let mut router = Router::new().route("/healthz", get(admin::healthz)).route("/auth/token", post(auth::sign_in));
    if admin {
        for (path, route) in admin_routes() {
            router = router.route(path, route);
        }
    }
    let router = router
        .route("/api/sync/batch", post(batch::handle))
        .route(live::STREAM_PATH, get(live::stream))
        .route(live::SOCKET_PATH, get(live::socket))
        .route("/api/{collection}", get(rest::list).post(rest::create))
        .route("/api/{collection}/{id}", get(rest::get_one).put(rest::replace).patch(rest::patch).delete(rest::delete))
        .method_not_allowed_fallback(method_not_allowed);
    let router = match static_dir {
        Some(dir) => {
            let site = ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")));
            router.fallback(move |req: Request| serve_static(site.clone(), req))
        }
        None => router.fallback(not_found),
    };
    router
        .layer(axum::middleware::from_fn_with_state(state.clone(), live::notify_writes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), faults::middleware))
        .layer(axum::middleware::from_fn_with_state(state.clone(), access::guard))
        .layer(cors())
        .with_state(state)
}

/// A server running in the background; tests and `main` both use it.
pub struct Server {
    addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Binds, opens the database and starts serving.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let state = AppState::open(config)?;
        let listener = TcpListener::bind((config.host.as_str(), config.port)).await.map_err(StartError::Io)?;
        let addr = listener.local_addr().map_err(StartError::Io)?;
        // The peer address is what the per-address rate limit counts.
        let router = app(state.clone(), config.static_dir.as_deref(), config.admin)
            .into_make_service_with_connect_info::<SocketAddr>();
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    // A dropped sender also means stop.
                    let _ = stop.await;
                })
                .await
        });
        Ok(Self { addr, state, shutdown, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish, and returns once the server is gone.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(());
        // Streams never end by themselves; the graceful shutdown would wait for them forever.
        self.state.live.close();
        match self.task.await {
            Ok(result) => result,
            Err(err) => Err(std::io::Error::other(err)),
        }
    }
}
