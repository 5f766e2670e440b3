//! Temporary experiment.
#![allow(missing_docs)]
use std::{sync::{Arc, Mutex}, time::{Duration, Instant}};
use go_go_objects::{ObjectId, bundle::Bundle, events::Event, runtime::Runtime};
use serde_json::json;
fn main() {
    let live: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(5000);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s2 = starts.clone();
    let runtime = Runtime::builder(Bundle::builtin_counter())
        .storage_root(dir.path())
        .config(|c| c.eviction.max_live_objects = Some(live))
        .on_event(move |event: &Event<'_>| { if let Event::ActorStarted { elapsed, .. } = event { s2.lock().unwrap().push(*elapsed); } })
        .build().unwrap();
    rt.block_on(async {
        let t = Instant::now();
        for i in 0..1000 {
            let id = ObjectId::new("COUNTER", &format!("start-{i}")).unwrap();
            runtime.rpc(&id, "increment", vec![json!(1)]).await.unwrap();
        }
        let el = t.elapsed();
        let mut c = starts.lock().unwrap().clone(); c.sort();
        println!("live {live} prefault {}: cold start p50 {:?}, per object total {:?}", std::env::var("GGO_NO_PREFAULT").is_err(), c[c.len()/2], el / 1000);
    });
    let _ = Duration::ZERO;
}
