//! go-go-objects inside an application of its own.
//!
//! An axum server with its own routes and a toy authentication (the user
//! is whoever the `x-user` header names; a real application would check a
//! session or a token). It mounts
//!
//! * the raw gateway under `/do` (any object by name: an admin surface),
//! * a per-user counter under `/me`, through a [`BoundDispatcher`], so each
//!   user reaches their own object and can name no other,
//! * and routes of its own: `/healthz` and `/whoami`.
//!
//! Run it and try it:
//!
//! ```sh
//! cargo run --example embedded -- --addr 127.0.0.1:3000 --storage ./var/example
//! curl -X POST -H 'x-user: alice' http://127.0.0.1:3000/me/rpc/COUNTER/increment -d '[2]'
//! curl -X POST -H 'x-user: bob' http://127.0.0.1:3000/me/rpc/COUNTER/value
//! curl -X POST http://127.0.0.1:3000/do/rpc/COUNTER/global/increment -d '[1]'
//! ```

use std::{path::PathBuf, time::Duration};

use axum::{Router, http::HeaderMap, routing::get};
use clap::Parser;
use go_go_objects::{
    bound::BoundDispatcher,
    bundle::Bundle,
    gateway::{self, GatewayOptions},
    runtime::Runtime,
};

/// The example's command line.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: String,
    /// Storage root.
    #[arg(long, default_value = "./var/example")]
    storage: PathBuf,
    /// Secret for deriving per-user object names (at least 32 bytes); a real
    /// application reads it from its secret store.
    #[arg(
        long,
        env = "EXAMPLE_BINDING_KEY",
        default_value = "an example key, not a secret: change it"
    )]
    binding_key: String,
}

/// The toy authentication: the `x-user` header, when present and not empty.
fn user_of(headers: &HeaderMap) -> Option<String> {
    let user = headers.get("x-user")?.to_str().ok()?.trim();
    (!user.is_empty()).then(|| user.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    go_go_objects::telemetry::init("info");

    let runtime = Runtime::builder(Bundle::builtin_counter())
        .storage_root(&args.storage)
        .start()
        .await?;
    let per_user = BoundDispatcher::new(runtime.clone(), args.binding_key.as_bytes(), ["COUNTER"])?;

    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/whoami",
            get(|headers: HeaderMap| async move {
                user_of(&headers).unwrap_or_else(|| "nobody".to_string())
            }),
        )
        .nest(
            "/do",
            gateway::router(runtime.clone(), GatewayOptions::default()),
        )
        .nest(
            "/me",
            gateway::bound_router(per_user, user_of, GatewayOptions::default()),
        );

    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    println!("example listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    runtime.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
