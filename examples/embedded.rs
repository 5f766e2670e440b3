//! go-go-objects inside an application of its own.
//!
//! An axum server with its own routes and a toy authentication (the user
//! is whoever the `x-user` header names; a real application would check a
//! session or a token). It mounts
//!
//! * a per-user counter under `/me`, through a [`BoundDispatcher`], so each
//!   user reaches their own object and can name no other,
//! * routes of its own: `/healthz` and `/whoami`,
//! * and, only with `--admin-token`, the raw gateway under `/do`: any object
//!   by name, for whoever sends `authorization: Bearer TOKEN`. It reaches
//!   every user's object, so it is an operator's surface, never a user's.
//!
//! The secret that derives per-user object names is read from
//! `EXAMPLE_BINDING_KEY`, or kept in `<storage>/binding.key` (made on the
//! first start, readable by its owner only): a key anyone can guess would
//! let anyone compute another user's object name.
//!
//! Run it and try it:
//!
//! ```sh
//! cargo run --example embedded -- --addr 127.0.0.1:3000 --storage ./var/example \
//!   --admin-token "$(openssl rand -hex 16)"
//! curl -X POST -H 'x-user: alice' http://127.0.0.1:3000/me/rpc/COUNTER/increment -d '[2]'
//! curl -X POST -H 'x-user: bob' http://127.0.0.1:3000/me/rpc/COUNTER/value
//! curl -X POST -H "authorization: Bearer $TOKEN" \
//!   http://127.0.0.1:3000/do/rpc/COUNTER/global/increment -d '[1]'
//! ```

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use axum::{
    Router,
    extract::Request,
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use clap::Parser;
use go_go_objects::{
    bound::BoundDispatcher,
    bundle::Bundle,
    gateway::{self, GatewayOptions, ServeOptions},
    runtime::Runtime,
};
use sha2::{Digest, Sha256};

/// The example's command line.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: String,
    /// Storage root.
    #[arg(long, default_value = "./var/example")]
    storage: PathBuf,
    /// Secret for deriving per-user object names (at least 32 bytes); without
    /// it, one is made once and kept in `<storage>/binding.key`.
    #[arg(long, env = "EXAMPLE_BINDING_KEY", hide_env_values = true)]
    binding_key: Option<String>,
    /// Serve the raw gateway under `/do` to requests bearing this token.
    #[arg(long, env = "EXAMPLE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

/// The toy authentication: the `x-user` header, when present and not empty.
fn user_of(headers: &HeaderMap) -> Option<String> {
    let user = headers.get("x-user")?.to_str().ok()?.trim();
    (!user.is_empty()).then(|| user.to_string())
}

/// The key in `<storage>/binding.key`, made (32 random bytes, mode 0600)
/// when the file does not exist yet.
fn stored_binding_key(storage: &Path) -> anyhow::Result<Vec<u8>> {
    let path = storage.join("binding.key");
    match std::fs::read(&path) {
        Ok(key) => return Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("failed to read `{}`", path.display())),
    }
    std::fs::create_dir_all(storage)
        .with_context(|| format!("failed to create `{}`", storage.display()))?;
    let mut key = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)
        .context("failed to read random bytes")?;
    let key = hex::encode(key).into_bytes();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("failed to create `{}`", path.display()))?;
    file.write_all(&key)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    Ok(key)
}

/// Lets a request through when it bears the admin token. The comparison is
/// of digests, so its time says nothing about the token.
async fn require_admin(expected: [u8; 32], request: Request, next: Next) -> Response {
    let offered = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|token| <[u8; 32]>::from(Sha256::digest(token.as_bytes())));
    if offered != Some(expected) {
        return (StatusCode::UNAUTHORIZED, "an admin token is required\n").into_response();
    }
    next.run(request).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    go_go_objects::telemetry::init("info");

    let binding_key = match &args.binding_key {
        Some(key) => key.clone().into_bytes(),
        None => stored_binding_key(&args.storage)?,
    };
    let runtime = Runtime::builder(Bundle::builtin_counter())
        .storage_root(&args.storage)
        .start()
        .await?;
    let per_user = BoundDispatcher::new(runtime.clone(), &binding_key, ["COUNTER"])?;

    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/whoami",
            get(|headers: HeaderMap| async move {
                user_of(&headers).unwrap_or_else(|| "nobody".to_string())
            }),
        )
        .nest(
            "/me",
            gateway::bound_router(per_user, user_of, GatewayOptions::default()),
        );
    if let Some(token) = &args.admin_token {
        let expected = <[u8; 32]>::from(Sha256::digest(token.as_bytes()));
        let admin = gateway::router(runtime.clone(), GatewayOptions::default()).layer(
            middleware::from_fn(move |request, next| require_admin(expected, request, next)),
        );
        app = app.nest("/do", admin);
    }

    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    println!("example listening on http://{}", listener.local_addr()?);
    // The gateway's own listener: header timeouts, a connection cap, and a
    // graceful stop on SIGINT or SIGTERM.
    gateway::serve(
        listener,
        app,
        ServeOptions::default(),
        gateway::shutdown_signal(),
    )
    .await;
    runtime.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
