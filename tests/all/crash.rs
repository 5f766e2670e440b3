//! Crash safety: a bounded load of increments on several objects, the
//! server killed with `kill -9` at random moments over several cycles.
//! Every acknowledged increment must be stored, and none that was never
//! sent: acknowledged <= stored <= attempted, for every object.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::support::{BinaryServer, post_json};

const OBJECTS: usize = 4;
const CYCLES: usize = 4;

#[derive(Default)]
struct Tally {
    attempted: AtomicU64,
    acknowledged: AtomicU64,
}

#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_str().unwrap().to_string();
    let tallies: Arc<Vec<Tally>> = Arc::new((0..OBJECTS).map(|_| Tally::default()).collect());
    let mut rng = StdRng::seed_from_u64(9);

    for _ in 0..CYCLES {
        let server = BinaryServer::start(&["--storage", &storage]);
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..OBJECTS)
            .map(|object| {
                let (base, stop, tallies) = (server.base.clone(), stop.clone(), tallies.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let url = format!("{base}/rpc/COUNTER/c{object}/increment");
                    // Bounded: a few hundred requests per cycle at most.
                    for _ in 0..400 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        tallies[object].attempted.fetch_add(1, Ordering::SeqCst);
                        let sent = client.post(&url).body("[1]").send().await;
                        let Ok(response) = sent else { break };
                        if response.status() == 200 && response.bytes().await.is_ok() {
                            tallies[object].acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(80..400))).await;
        server.kill();
        stop.store(true, Ordering::SeqCst);
        for client in clients {
            client.await.unwrap();
        }
    }

    let server = BinaryServer::start(&["--storage", &storage]);
    for (object, tally) in tallies.iter().enumerate() {
        let stored = post_json(&server.base, &format!("/rpc/COUNTER/c{object}/value"), "[]")
            .await
            .result()
            .as_u64()
            .unwrap();
        let acknowledged = tally.acknowledged.load(Ordering::SeqCst);
        let attempted = tally.attempted.load(Ordering::SeqCst);
        assert!(
            acknowledged > 0,
            "object {object}: the load reached the server"
        );
        assert!(
            acknowledged <= stored && stored <= attempted,
            "object {object}: acknowledged {acknowledged}, stored {stored}, attempted {attempted}"
        );
    }
}
