//! Alarms: scheduling, delivery, retries, and the index that finds them.
//!
//! Time is a [`ManualClock`] shared by the scheduler and `Date.now()` in
//! JavaScript, and alarms are delivered with `run_due_alarms`, so no test
//! here waits for real time to pass, except the ones that drive the real
//! binary through `kill -9`.

use std::time::Duration;

use go_go_objects::{ObjectId, alarms::INDEX_FILE, clock::ManualClock, storage};
use serde_json::{Value, json};

use crate::support::{BinaryServer, ServerBuilder, TestServer, fixture, fixtures, post_json};

/// A fixed start, so `Date.now()` in the bundles is predictable.
const T0: u64 = 1_800_000_000_000;

async fn server_with(clock: &ManualClock, bundle: &str, manifest: Option<&str>) -> TestServer {
    let mut builder = ServerBuilder::new(fixture(bundle)).clock(clock);
    if let Some(manifest) = manifest {
        builder = builder.manifest(manifest);
    }
    builder.start().await
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ---- the reference's alarm tests ------------------------------------------

#[tokio::test]
async fn a_due_alarm_wakes_an_evicted_actor_and_fires_once() {
    let clock = ManualClock::new(T0);
    let server = server_with(&clock, "reference/objects.js", None).await;
    let scheduled = server
        .call("COUNTER", "a", "scheduleAlarm", json!([T0 - 1]))
        .await;
    assert_eq!(
        scheduled,
        T0 - 1,
        "getAlarm reports what was set, even in the past"
    );

    let id = ObjectId::new("COUNTER", "a").unwrap();
    assert!(server.runtime.evict(&id));
    assert_eq!(server.runtime.live_objects(), 0);
    assert_eq!(
        server.runtime.run_due_alarms().await,
        1,
        "the evicted actor was woken"
    );
    assert_eq!(
        server.runtime.run_due_alarms().await,
        0,
        "and the alarm fired once"
    );
    assert_eq!(
        server.call("COUNTER", "a", "alarmCount", json!([])).await,
        1
    );
    assert_eq!(
        server
            .call("COUNTER", "a", "get", json!(["lastAlarmInfo"]))
            .await,
        json!({"retryCount": 0, "isRetry": false})
    );
    assert_eq!(
        server.call("COUNTER", "a", "cancelAlarm", json!([])).await,
        Value::Null
    );
    assert_eq!(server.runtime.scheduled_alarms(), 0);
}

#[tokio::test]
async fn alarms_never_fire_early_and_a_deleted_alarm_never_fires() {
    let clock = ManualClock::new(T0);
    let server = server_with(&clock, "reference/objects.js", None).await;
    server
        .call("COUNTER", "later", "scheduleAlarm", json!([T0 + 5_000]))
        .await;
    server
        .call("COUNTER", "cancelled", "scheduleAlarm", json!([T0 + 1_000]))
        .await;
    server
        .call("COUNTER", "cancelled", "cancelAlarm", json!([]))
        .await;

    clock.advance(Duration::from_millis(4_999));
    assert_eq!(server.runtime.run_due_alarms().await, 0);
    clock.advance(Duration::from_millis(1));
    assert_eq!(server.runtime.run_due_alarms().await, 1);
    assert_eq!(
        server
            .call("COUNTER", "later", "alarmCount", json!([]))
            .await,
        1
    );
    assert_eq!(
        server
            .call("COUNTER", "cancelled", "alarmCount", json!([]))
            .await,
        0
    );
}

#[tokio::test]
async fn a_lost_index_is_rebuilt_from_the_object_databases() {
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        ServerBuilder::new(fixture("reference/objects.js"))
            .clock(&clock)
            .storage(dir.path())
            .start()
    };
    let server = start().await;
    server
        .call("COUNTER", "r", "scheduleAlarm", json!([T0 + 10]))
        .await;
    server
        .call("COUNTER", "plain", "increment", json!([]))
        .await;
    server.runtime.shutdown(secs(5)).await;
    drop(server);

    std::fs::remove_file(dir.path().join(INDEX_FILE)).unwrap();
    let server = start().await;
    assert_eq!(
        server.runtime.scheduled_alarms(),
        1,
        "only the object with an alarm"
    );
    clock.advance(secs(1));
    assert_eq!(server.runtime.run_due_alarms().await, 1);
    assert_eq!(
        server.call("COUNTER", "r", "alarmCount", json!([])).await,
        1
    );
}

#[tokio::test]
async fn a_stale_index_row_is_corrected_without_starting_the_object() {
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .clock(&clock)
        .storage(dir.path())
        .start()
        .await;
    server
        .call("COUNTER", "s", "scheduleAlarm", json!([T0 + 10]))
        .await;
    server.runtime.shutdown(secs(5)).await;
    drop(server);

    // Remove the alarm behind the index's back, as a crash between the
    // object's commit of `deleteAlarm` and the index update would.
    let id = ObjectId::new("COUNTER", "s").unwrap();
    let db = rusqlite::Connection::open(storage::database_path(dir.path(), &id)).unwrap();
    db.execute("DELETE FROM alarms", []).unwrap();
    drop(db);

    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .clock(&clock)
        .storage(dir.path())
        .start()
        .await;
    assert_eq!(server.runtime.scheduled_alarms(), 1);
    clock.advance(secs(1));
    assert_eq!(server.runtime.run_due_alarms().await, 0);
    assert_eq!(
        server.runtime.scheduled_alarms(),
        0,
        "the stale row is gone"
    );
    assert_eq!(
        server.runtime.actor_starts(),
        0,
        "no actor was started to find out"
    );
}

// ---- idle eviction --------------------------------------------------------

#[tokio::test]
async fn idle_actors_are_evicted_and_keep_their_state() {
    let clock = ManualClock::new(T0);
    let server = server_with(&clock, "reference/objects.js", None).await;
    assert_eq!(
        server.call("COUNTER", "idle", "increment", json!([])).await,
        1
    );
    clock.advance(secs(60));
    assert_eq!(
        server
            .call("COUNTER", "recent", "increment", json!([]))
            .await,
        1
    );

    clock.advance(secs(239));
    assert_eq!(
        server.runtime.evict_idle(),
        0,
        "nobody idle for 5 minutes yet"
    );
    clock.advance(secs(1));
    assert_eq!(server.runtime.evict_idle(), 1, "idle for exactly 5 minutes");
    assert_eq!(server.runtime.live_objects(), 1);
    clock.advance(secs(60));
    assert_eq!(server.runtime.evict_idle(), 1);
    assert_eq!(server.runtime.live_objects(), 0);

    assert_eq!(
        server.call("COUNTER", "idle", "increment", json!([])).await,
        2
    );
    assert_eq!(server.runtime.actor_starts(), 3);
}

#[tokio::test]
async fn the_background_loops_evict_and_deliver_on_their_own() {
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .config(|c| {
            c.eviction.idle_timeout = Some(Duration::from_millis(100));
            c.eviction.idle_interval = Some(Duration::from_millis(20));
        })
        .background()
        .start()
        .await;
    let now = go_go_objects::clock::Clock::now_ms(&go_go_objects::clock::SystemClock);
    server
        .call("COUNTER", "bg", "scheduleAlarm", json!([now + 200]))
        .await;
    for _ in 0..200 {
        if server.runtime.live_objects() == 0 && server.runtime.scheduled_alarms() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        server.runtime.scheduled_alarms(),
        0,
        "the alarm loop delivered the alarm"
    );
    assert_eq!(
        server.runtime.live_objects(),
        0,
        "the idle loop evicted the actor"
    );
    assert_eq!(
        server.call("COUNTER", "bg", "alarmCount", json!([])).await,
        1
    );
}

#[tokio::test]
async fn a_busy_actor_is_never_evicted() {
    let server = std::sync::Arc::new(
        ServerBuilder::new(fixture("reference/objects.js"))
            .config(|c| c.eviction.idle_timeout = Some(Duration::from_millis(1)))
            .start()
            .await,
    );
    let id = ObjectId::new("COUNTER", "busy").unwrap();
    let spinning = {
        let server = server.clone();
        tokio::spawn(async move { server.rpc("COUNTER", "busy", "spin", json!([600])).await })
    };
    // Wait until the dispatch holds the object (it was started and is
    // spinning), then try to evict it.
    for _ in 0..200 {
        if server.runtime.live_objects() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.runtime.evict_idle(), 0);
    assert!(!server.runtime.evict(&id));
    assert_eq!(spinning.await.unwrap().result(), true);

    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        server.runtime.evict_idle(),
        1,
        "idle once the dispatch is over"
    );
}

#[tokio::test]
async fn the_live_object_limit_evicts_the_least_recently_used() {
    let clock = ManualClock::new(T0);
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .clock(&clock)
        .config(|c| c.eviction.max_live_objects = Some(3))
        .start()
        .await;
    for i in 0..10 {
        clock.advance(secs(1));
        server
            .call("COUNTER", &format!("o{i}"), "increment", json!([i]))
            .await;
        assert!(server.runtime.live_objects() <= 3);
    }
    assert_eq!(server.runtime.live_objects(), 3);
    assert_eq!(server.runtime.actor_starts(), 10);

    // o9 was used last, so it is live; o0 was evicted and starts again.
    clock.advance(secs(1));
    server.call("COUNTER", "o9", "value", json!([])).await;
    assert_eq!(server.runtime.actor_starts(), 10);
    assert_eq!(
        server.call("COUNTER", "o0", "value", json!([])).await,
        1,
        "state kept"
    );
    assert_eq!(server.runtime.actor_starts(), 11);
    assert_eq!(server.runtime.live_objects(), 3);
}

#[tokio::test]
async fn a_failed_alarm_is_retried_one_delay_after_it_failed_not_after_it_started() {
    // The handler runs until the clock moves (the test moves it), then
    // throws: like a handler that ran until its deadline.
    const SLOW_ALARM: &str = r#"
        class Slow {
          constructor(state) { this.state = state; }
          arm(at) { this.state.storage.setAlarm(at); return true; }
          next() { return this.state.storage.getAlarm(); }
          alarm() {
            const started = Date.now();
            while (Date.now() === started) {}
            throw new Error('failed after ' + (Date.now() - started) + ' ms');
          }
        }
        exports.objects = { Slow };
    "#;
    let clock = ManualClock::new(T0);
    let server = ServerBuilder::new(go_go_objects::bundle::Bundle::from_source(
        "slow-alarm.js",
        SLOW_ALARM,
    ))
    .clock(&clock)
    .limits(|l| l.cpu_fuel = u64::MAX)
    .start()
    .await;
    server.call("SLOW", "s", "arm", json!([T0])).await;
    let runtime = server.runtime.clone();
    let running = tokio::spawn(async move { runtime.run_due_alarms().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    clock.advance(secs(10));
    assert_eq!(running.await.unwrap(), 1);
    assert_eq!(
        server.call("SLOW", "s", "next", json!([])).await,
        T0 + 10_000 + 2_000,
        "the first retry waits --alarm-retry-delay from the failure"
    );
}

/// Sets alarms relative to the guest's clock and reports what it reads.
const RELATIVE_ALARM: &str = r#"
    class Timer {
      constructor(state) { this.state = state; }
      inAnHour() {
        const at = Date.now() + 3600000;
        this.state.storage.setAlarm(at);
        return { now: Date.now(), at, read: this.state.storage.getAlarm() };
      }
      alarm() { this.state.storage.put('fired', (this.state.storage.get('fired') || 0) + 1); }
      fired() { return this.state.storage.get('fired') || 0; }
      refuse(value) {
        try { this.state.storage.setAlarm(value); return 'accepted'; }
        catch (e) { return e.name + ': ' + e.message; }
      }
    }
    exports.objects = { Timer };
"#;

#[tokio::test]
async fn deterministic_alarms_keep_their_distance_from_the_logical_clock() {
    let clock = ManualClock::new(T0);
    let server = ServerBuilder::new(go_go_objects::bundle::Bundle::from_source(
        "timer.js",
        RELATIVE_ALARM,
    ))
    .clock(&clock)
    .limits(|l| l.seed = Some(7))
    .start()
    .await;
    let set = server.call("TIMER", "t", "inAnHour", json!([])).await;
    let at = set["at"].as_u64().unwrap();
    assert!(
        at < 1_800_000_000_000,
        "the guest's clock is logical (2026): {set}"
    );
    assert_eq!(set["read"], at, "getAlarm reads what was set");

    // Due an hour of host time from now, not at once.
    assert_eq!(server.runtime.run_due_alarms().await, 0);
    clock.advance(secs(3590));
    assert_eq!(server.runtime.run_due_alarms().await, 0);
    clock.advance(secs(20));
    assert_eq!(server.runtime.run_due_alarms().await, 1);
    assert_eq!(server.call("TIMER", "t", "fired", json!([])).await, 1);
}

#[tokio::test]
async fn bad_alarm_times_say_what_is_wrong() {
    let server = ServerBuilder::new(go_go_objects::bundle::Bundle::from_source(
        "timer.js",
        RELATIVE_ALARM,
    ))
    .start()
    .await;
    let refuse = |value: Value| {
        let server = &server;
        async move {
            let reply = server.call("TIMER", "t", "refuse", json!([value])).await;
            reply.as_str().unwrap().to_string()
        }
    };
    assert!(refuse(json!(0.5)).await.contains("at least 1"));
    assert!(refuse(json!(-3)).await.contains("at least 1"));
    assert!(
        refuse(json!(9_007_199_254_740_991_u64))
            .await
            .contains("past the latest time a Date can hold")
    );
    assert!(refuse(json!("soon")).await.starts_with("TypeError"));
    assert_eq!(refuse(json!(1.9)).await, "accepted");
}

// ---- case 10: scheduling ---------------------------------------------------

#[tokio::test]
async fn case_10_alarm_scheduling() {
    let clock = ManualClock::new(T0);
    let server = server_with(
        &clock,
        "cases/10-alarms-scheduling.js",
        Some("objects:\n  Clock: Clock\n"),
    )
    .await;
    let call = |name: &'static str, method: &'static str, args: Value| {
        let server = &server;
        async move { server.call("Clock", name, method, args).await }
    };
    let status = |name: &'static str| call(name, "status", json!([]));

    // 1. A time in the past runs at once; getAlarm is null inside alarm().
    assert_eq!(call("c1", "chain", json!([0])).await, true);
    assert_eq!(server.runtime.run_due_alarms().await, 1);
    let c1 = status("c1").await;
    assert_eq!(c1["firedCount"], 1);
    assert_eq!(c1["insideGetAlarm"], json!([null]));
    assert_eq!(c1["retryCounts"], json!([0]));
    assert_eq!(c1["pending"], Value::Null);

    // 2. Re-arming from inside the handler keeps the chain going.
    assert_eq!(call("c2", "chain", json!([3])).await, true);
    for _ in 0..4 {
        assert_eq!(server.runtime.run_due_alarms().await, 1);
    }
    assert_eq!(server.runtime.run_due_alarms().await, 0);
    let c2 = status("c2").await;
    assert_eq!(c2["firedCount"], 4);
    assert_eq!(c2["insideGetAlarm"], json!([null, null, null, null]));
    assert_eq!(c2["pending"], Value::Null);

    // 3. A second setAlarm replaces the first; 4. deleteAlarm cancels;
    // 5. a Date works.
    assert_eq!(
        call("c3", "armTwice", json!([60_000, 500])).await,
        json!({"scheduledMatches": true})
    );
    assert_eq!(
        call("c4", "arm", json!([1000])).await,
        json!({"scheduledMatches": true})
    );
    assert_eq!(call("c4", "cancel", json!([])).await, Value::Null);
    assert_eq!(
        call("c5", "armDate", json!([300])).await,
        json!({"scheduledMatches": true})
    );
    clock.advance(secs(2));
    assert_eq!(server.runtime.run_due_alarms().await, 2);
    assert_eq!(status("c3").await["firedCount"], 1);
    assert_eq!(status("c4").await["firedCount"], 0);
    assert_eq!(status("c5").await["firedCount"], 1);
    clock.advance(secs(65));
    assert_eq!(
        server.runtime.run_due_alarms().await,
        0,
        "the 60 s alarm is gone"
    );
    assert_eq!(status("c3").await["pending"], Value::Null);

    // 6. Invalid times are TypeErrors and leave no alarm.
    assert_eq!(
        call("c6", "badArm", json!([])).await,
        json!({"zero": "TypeError", "negative": "TypeError", "nan": "TypeError",
               "string": "TypeError", "pending": null})
    );

    // 7. Never early.
    let armed_at = clock_now(&server, "c7").await;
    call("c7", "arm", json!([3000])).await;
    clock.advance(Duration::from_millis(2_999));
    assert_eq!(server.runtime.run_due_alarms().await, 0);
    assert_eq!(status("c7").await["pending"], armed_at + 3000);
    clock.advance(Duration::from_millis(1));
    assert_eq!(server.runtime.run_due_alarms().await, 1);
    let c7 = status("c7").await;
    assert_eq!(c7["firedCount"], 1);
    assert!(c7["lastAt"].as_u64().unwrap() >= armed_at + 3000);
}

async fn clock_now(server: &TestServer, name: &str) -> u64 {
    server.call("Clock", name, "status", json!([])).await["now"]
        .as_u64()
        .unwrap()
}

// ---- case 11: retries --------------------------------------------------------

async fn flaky_status(server: &TestServer, name: &str) -> Value {
    server.call("Flaky", name, "status", json!([])).await
}

/// Advances the clock to the object's pending alarm and delivers it.
async fn fire_next(server: &TestServer, clock: &ManualClock, name: &str) -> bool {
    let pending = flaky_status(server, name).await["pending"].as_u64();
    let Some(pending) = pending else {
        return false;
    };
    clock.set(pending.max(go_go_objects::clock::Clock::now_ms(clock)));
    server.runtime.run_due_alarms().await == 1
}

#[tokio::test]
async fn case_11_alarm_retries() {
    let clock = ManualClock::new(T0);
    let server = server_with(
        &clock,
        "cases/11-alarm-retries.js",
        Some("objects:\n  Flaky: Flaky\n"),
    )
    .await;

    // 1. Fails twice, then succeeds; a success is final.
    assert_eq!(server.call("Flaky", "a", "setup", json!([2])).await, true);
    while fire_next(&server, &clock, "a").await {}
    let a = flaky_status(&server, "a").await;
    assert_eq!(a["count"], 3);
    assert_eq!(a["retryCounts"], json!([0, 1, 2]));
    assert_eq!(a["isRetry"], json!([false, true, true]));
    assert_eq!(a["gapsMs"], json!([2000, 4000]));
    assert_eq!(a["pending"], Value::Null);

    // 2. Never succeeds: six retries, doubling from 2 s, then dropped.
    assert_eq!(server.call("Flaky", "b", "setup", json!([100])).await, true);
    while fire_next(&server, &clock, "b").await {}
    let b = flaky_status(&server, "b").await;
    assert_eq!(b["count"], 7);
    assert_eq!(b["retryCounts"], json!([0, 1, 2, 3, 4, 5, 6]));
    assert_eq!(
        b["isRetry"],
        json!([false, true, true, true, true, true, true])
    );
    assert_eq!(b["gapsMs"], json!([2000, 4000, 8000, 16000, 32000, 64000]));
    assert_eq!(
        b["pending"],
        Value::Null,
        "getAlarm stops reporting a dropped alarm"
    );
    clock.advance(secs(150));
    assert_eq!(server.runtime.run_due_alarms().await, 0);
    assert_eq!(flaky_status(&server, "b").await["count"], 7);

    // 3. Succeeds the first time.
    server.call("Flaky", "c", "setup", json!([0])).await;
    while fire_next(&server, &clock, "c").await {}
    let c = flaky_status(&server, "c").await;
    assert_eq!(
        (c["count"].clone(), c["gapsMs"].clone()),
        (json!(1), json!([]))
    );

    // 4. A failing handler that sets a new alarm replaces its retries.
    server.call("Flaky", "d", "setup", json!([1, 5000])).await;
    while fire_next(&server, &clock, "d").await {}
    let d = flaky_status(&server, "d").await;
    assert_eq!(d["count"], 2);
    assert_eq!(d["retryCounts"], json!([0, 0]));
    assert_eq!(d["gapsMs"], json!([5000]));
    assert_eq!(d["pending"], Value::Null);
}

#[tokio::test]
async fn trapping_alarm_handlers_are_retried_then_dropped() {
    let clock = ManualClock::new(T0);
    let server = ServerBuilder::new(fixture("alarms/failing.js"))
        .clock(&clock)
        .limits(|l| {
            l.cpu_fuel = 200_000_000;
            l.max_memory = 32 * 1024 * 1024;
        })
        .start()
        .await;
    for (name, mode) in [("burn", "burn"), ("never", "never"), ("oom", "oom")] {
        server.call("RUNAWAY", name, "arm", json!([T0, mode])).await;
    }
    server.call("PLAIN", "p", "arm", json!([T0])).await;

    // First run: the three fail and come back 2 s later; Plain's alarm
    // is consumed by the class without alarm().
    assert_eq!(server.runtime.run_due_alarms().await, 4);
    for name in ["burn", "never", "oom"] {
        let pending = server.call("RUNAWAY", name, "pending", json!([])).await;
        assert_eq!(pending, T0 + 2_000, "{name}");
        let runs = server
            .call("RUNAWAY", name, "committedRuns", json!([]))
            .await;
        assert_eq!(runs, 0, "{name}: a trapped run's writes roll back");
    }
    assert_eq!(
        server.call("PLAIN", "p", "pending", json!([])).await,
        Value::Null
    );

    // Six retries later all three are dropped, and stay dropped.
    for delay in [2, 4, 8, 16, 32, 64] {
        clock.advance(secs(delay));
        assert_eq!(server.runtime.run_due_alarms().await, 3);
    }
    for name in ["burn", "never", "oom"] {
        assert_eq!(
            server.call("RUNAWAY", name, "pending", json!([])).await,
            Value::Null
        );
    }
    clock.advance(secs(600));
    assert_eq!(server.runtime.run_due_alarms().await, 0);
    assert_eq!(server.runtime.scheduled_alarms(), 0);
}

#[tokio::test]
async fn an_actor_that_cannot_start_counts_as_a_failed_alarm() {
    let clock = ManualClock::new(T0);
    let server = server_with(&clock, "alarms/failing.js", None).await;
    server
        .call("BAD_CTOR", "b", "armAndBreak", json!([T0 + 100]))
        .await;
    let id = ObjectId::new("BAD_CTOR", "b").unwrap();
    assert!(server.runtime.evict(&id));

    let pending = || {
        let path = storage::database_path(&server.storage_root, &id);
        storage::read_stored_alarm(&path).unwrap().map(|s| s.alarm)
    };
    clock.advance(secs(1));
    assert_eq!(server.runtime.run_due_alarms().await, 1);
    let retry = pending().expect("the alarm is kept for a retry");
    assert_eq!((retry.due_ms, retry.retry_count), (T0 + 1_000 + 2_000, 1));
    for delay in [2, 4, 8, 16, 32, 64] {
        clock.advance(secs(delay));
        assert_eq!(server.runtime.run_due_alarms().await, 1);
    }
    assert_eq!(pending(), None, "dropped after six retries");
}

// ---- the real binary across kill -9 -------------------------------------------

/// Flags for the binary: the bundle, a manifest written into `dir`, and
/// storage under `dir`.
fn binary_args(bundle: &str, manifest: &str, dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let manifest_path = dir.join("manifest.yaml");
    std::fs::write(&manifest_path, manifest).unwrap();
    let mut args: Vec<String> = vec![
        "--bundle".into(),
        fixtures().join(bundle).to_str().unwrap().into(),
        "--manifest".into(),
        manifest_path.to_str().unwrap().into(),
        "--storage".into(),
        dir.join("storage").to_str().unwrap().into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

async fn poll_until(base: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = post_json(base, path, "[]").await.result();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting; last answer {last}");
}

#[tokio::test]
async fn an_alarm_set_before_kill_9_fires_once_after_restart_without_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let args = binary_args(
        "cases/10-alarms-scheduling.js",
        "objects:\n  Clock: Clock\n",
        dir.path(),
        &[],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = BinaryServer::start(&args);
    let armed = post_json(&server.base, "/rpc/Clock/c8/arm", "[800]").await;
    assert_eq!(armed.result(), json!({"scheduledMatches": true}));
    server.kill();
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    let server = BinaryServer::start(&args);
    // Wait without touching c8: another object answers meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = poll_until(&server.base, "/rpc/Clock/c8/status", |s| {
        s["firedCount"] == 1
    })
    .await;
    assert_eq!(status["pending"], Value::Null);
    assert!(status["lastAt"].as_u64() < status["now"].as_u64());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = post_json(&server.base, "/rpc/Clock/c8/status", "[]")
        .await
        .result();
    assert_eq!(again["firedCount"], 1, "fired exactly once");
}

#[tokio::test]
async fn a_crash_during_backoff_neither_loses_nor_repeats_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    let args = binary_args(
        "cases/11-alarm-retries.js",
        "objects:\n  Flaky: Flaky\n",
        dir.path(),
        &["--alarm-retry-delay", "300ms"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = BinaryServer::start(&args);
    assert_eq!(
        post_json(&server.base, "/rpc/Flaky/e/setup", "[3]")
            .await
            .result(),
        true
    );
    poll_until(&server.base, "/rpc/Flaky/e/status", |s| s["count"] == 1).await;
    server.kill();

    let server = BinaryServer::start(&args);
    let status = poll_until(&server.base, "/rpc/Flaky/e/status", |s| s["count"] == 4).await;
    assert_eq!(status["pending"], Value::Null);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let again = post_json(&server.base, "/rpc/Flaky/e/status", "[]")
        .await
        .result();
    assert_eq!(again["count"], 4, "the retry neither lost nor fired twice");
}

// ---- graceful shutdown ---------------------------------------------------------

#[tokio::test]
async fn sigterm_lets_running_dispatches_finish_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let bundle = fixtures().join("reference/objects.js");
    let args = [
        "--bundle",
        bundle.to_str().unwrap(),
        "--storage",
        storage.to_str().unwrap(),
        "--cpu-fuel",
        "0",
        "--cpu-timeout",
        "10s",
    ];
    let mut server = BinaryServer::start(&args);
    assert_eq!(
        post_json(&server.base, "/rpc/COUNTER/kept/increment", "[5]")
            .await
            .result(),
        5
    );

    let base = server.base.clone();
    let slow =
        tokio::spawn(async move { post_json(&base, "/rpc/COUNTER/slow/spin", "[700]").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = server.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());

    let reply = slow.await.unwrap();
    assert_eq!(
        reply.result(),
        true,
        "the running dispatch finished: {}",
        reply.text
    );
    let exit = tokio::task::spawn_blocking(move || server.child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");

    let server = BinaryServer::start(&args);
    assert_eq!(
        post_json(&server.base, "/rpc/COUNTER/kept/value", "[]")
            .await
            .result(),
        5
    );
}

#[tokio::test]
async fn sigterm_waits_one_shutdown_timeout_in_all_for_a_dispatch_that_never_ends() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let bundle = fixtures().join("reference/objects.js");
    let mut server = BinaryServer::start(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--storage",
        storage.to_str().unwrap(),
        "--cpu-fuel",
        "0",
        "--cpu-timeout",
        "0",
        "--shutdown-timeout",
        "3s",
    ]);
    let base = server.base.clone();
    // Ten minutes of spinning: far past any timeout of this test.
    let _stuck =
        tokio::spawn(async move { post_json(&base, "/rpc/COUNTER/stuck/spin", "[600000]").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = std::time::Instant::now();
    let pid = server.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || server.child.wait().unwrap())
        .await
        .unwrap();
    let took = signalled.elapsed();
    assert!(exit.success(), "exit status {exit:?}");
    // The requests' wait and the actors' drain share the 3 s (it was once
    // 3 s each); the bound leaves room for a slow machine.
    assert!(took < Duration::from_millis(5500), "took {took:?}");
}

#[tokio::test]
async fn a_shut_down_runtime_refuses_dispatches_and_creates_its_root_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("not/yet/there");
    let clock = ManualClock::new(T0);
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .clock(&clock)
        .storage(&root)
        .start()
        .await;
    assert!(root.is_dir(), "the storage root exists before any object");
    assert_eq!(server.runtime.run_due_alarms().await, 0);
    server.call("COUNTER", "x", "increment", json!([])).await;
    let report = server.runtime.shutdown(secs(5)).await;
    assert_eq!(report.still_busy, 0);
    assert_eq!(server.runtime.live_objects(), 0, "every actor was closed");
    let refused = server.rpc("COUNTER", "x", "increment", json!([])).await;
    assert_eq!(refused.status, 500);
    assert!(
        refused.message().contains("shutting down"),
        "{}",
        refused.text
    );
}

/// Storage that fails in the middle of a delivery, after the delivery wrote
/// (here a trigger, added while the actor's database was closed, writes a
/// row and then fails the alarm's deletion), leaves the delivery's
/// transaction open: the actor is discarded, so that the transaction rolls
/// back instead of going out with the next dispatch's commit.
#[tokio::test]
async fn a_delivery_whose_storage_fails_after_writing_commits_none_of_it() {
    let clock = ManualClock::new(T0);
    let server = ServerBuilder::new(fixture("reference/objects.js"))
        .clock(&clock)
        .config(|c| c.eviction.idle_release = Some(secs(10)))
        .start()
        .await;
    server
        .call("COUNTER", "trigger", "scheduleAlarm", json!([T0 + 60_000]))
        .await;
    clock.advance(secs(61));
    assert_eq!(server.runtime.release_idle().databases, 1);
    assert_eq!(server.runtime.live_objects(), 1);

    let id = ObjectId::new("COUNTER", "trigger").unwrap();
    let path = storage::database_path(&server.storage_root, &id);
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.pragma_update(None, "locking_mode", "EXCLUSIVE").unwrap();
        db.execute_batch(
            "CREATE TRIGGER fail_alarm_deletion AFTER DELETE ON alarms BEGIN
               INSERT INTO kv (key, value_json, updated_at_ms) VALUES ('count', '100', 0);
               SELECT RAISE(FAIL, 'the disk is failing');
             END;",
        )
        .unwrap();
    }

    assert_eq!(
        server.runtime.run_due_alarms().await,
        0,
        "the delivery is deferred"
    );
    assert_eq!(server.runtime.live_objects(), 0, "the actor is discarded");
    assert_eq!(
        server
            .call("COUNTER", "trigger", "increment", json!([1]))
            .await,
        json!(1),
        "the failed delivery's write was rolled back"
    );
}
