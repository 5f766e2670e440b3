//! A randomized test of the host functions, called straight from a raw
//! wasm module (not the guest), with arguments no guest should send:
//! pointers and lengths out of bounds or negative, bytes that are not
//! JSON, requests of the wrong shape or with absurd values, answers fetched
//! twice or with the wrong length. Every call must return or trap; none may
//! panic the host or corrupt the object's storage.

use std::sync::Arc;

use rand::{Rng, RngExt, SeedableRng, rngs::StdRng};
use wasmtime::{Engine, Linker, Module, Store, TypedFunc};

use super::{ActorState, CallContext, HostContext, ObjectServices, StubDispatcher};
use crate::{
    alarms::AlarmIndex,
    bundle::ClassMap,
    clock::SharedClock,
    config::Limits,
    envelope::{DispatchKind, FetchRequest, FetchResponse},
    error::DispatchError,
    id::ObjectId,
    storage::ObjectStorage,
};

const PROBE: &str = r#"
(module
  (import "go_go_objects" "host_call" (func $call (param i32 i32) (result i32)))
  (import "go_go_objects" "host_response" (func $response (param i32 i32) (result i32)))
  (import "go_go_objects" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (func (export "call") (param i32 i32) (result i32) local.get 0 local.get 1 call $call)
  (func (export "response") (param i32 i32) (result i32)
    local.get 0 local.get 1 call $response)
  (func (export "log") (param i32 i32 i32) local.get 0 local.get 1 local.get 2 call $log))
"#;

/// A memory of two 64 KiB pages.
const MEMORY_BYTES: i32 = 2 * 65_536;

struct NoStubs;

impl StubDispatcher for NoStubs {
    fn call(
        &self,
        _: &CallContext,
        target: ObjectId,
        _: DispatchKind,
    ) -> Result<String, DispatchError> {
        Err(DispatchError::bad_request(format!(
            "no stubs in this test ({target})"
        )))
    }

    fn find_object(&self, _: &str, _: &str) -> Option<ObjectId> {
        None
    }

    fn record_name(&self, _: &ObjectId) -> Result<(), DispatchError> {
        Ok(())
    }

    fn fetch(
        &self,
        _: &CallContext,
        target: ObjectId,
        _: FetchRequest,
    ) -> Result<FetchResponse, DispatchError> {
        Err(DispatchError::bad_request(format!(
            "no stubs in this test ({target})"
        )))
    }
}

fn requests(rng: &mut StdRng) -> Vec<u8> {
    let junk_string = |rng: &mut StdRng| -> String {
        match rng.random_range(0..6) {
            0 => String::new(),
            1 => " \t ".into(),
            2 => "k".repeat(rng.random_range(0..5_000)),
            3 => "\u{0}\u{FFFF}\u{10FFFF}é".into(),
            4 => format!("key{}", rng.random::<u32>()),
            _ => "%_".into(),
        }
    };
    let number = |rng: &mut StdRng| -> String {
        [
            "0",
            "-1",
            "1e308",
            "-0",
            "3.5",
            "18446744073709551616",
            "9007199254740993",
            "1",
        ][rng.random_range(0..8)]
        .into()
    };
    let key = serde_json::to_string(&junk_string(rng)).unwrap();
    let value = serde_json::to_string(&junk_string(rng)).unwrap();
    let n = number(rng);
    let text = match rng.random_range(0..22) {
        0 => format!(r#"{{"op":"get","key":{key}}}"#),
        1 => format!(r#"{{"op":"put","key":{key},"value":{value}}}"#),
        2 => format!(r#"{{"op":"put","key":{key},"value":"{{\"a\":1}}"}}"#),
        3 => format!(r#"{{"op":"delete","key":{key}}}"#),
        4 => format!(r#"{{"op":"list","prefix":{key},"limit":{n}}}"#),
        5 => r#"{"op":"deleteAll"}"#.into(),
        6 => r#"{"op":"transactionBegin"}"#.into(),
        7 => r#"{"op":"transactionCommit"}"#.into(),
        8 => r#"{"op":"transactionRollback"}"#.into(),
        9 => format!(r#"{{"op":"setAlarm","time":{n}}}"#),
        10 => r#"{"op":"getAlarm"}"#.into(),
        11 => format!(r#"{{"op":"randomBytes","len":{n}}}"#),
        12 => format!(r#"{{"op":"objectId","namespace":{key},"name":{value}}}"#),
        13 => {
            format!(r#"{{"op":"rpc","namespace":"NS","name":{key},"method":"m","args":{value}}}"#)
        }
        14 => format!(r#"{{"op":{key},"key":1,"extra":[1,2,{{"deep":null}}]}}"#),
        15 => format!(r#"{{"op":"getMany","keys":[{key},{value},{key}]}}"#),
        16 => format!(r#"{{"op":"sqlExec","query":{value},"bindings":[{n},{key},{{"b":{key}}}]}}"#),
        17 => format!(
            r#"{{"op":"sqlExec","query":"SELECT * FROM kv; ATTACH {key} AS x","bindings":[]}}"#
        ),
        18 => r#"{"op":"sqlDatabaseSize"}"#.into(),
        19 => format!(r#"{{"op":"idFromString","namespace":"NS","id":{key}}}"#),
        20 => format!(
            r#"{{"op":"fetch","namespace":"NS","name":{key},"request":{{"method":{value},"url":"u","path":"/","query":{{}},"headers":{{}},"body":null,"rawBody":"","objectUrl":"u"}}}}"#
        ),
        _ => {
            let mut bytes = vec![0u8; rng.random_range(0..300)];
            rng.fill_bytes(&mut bytes);
            return bytes;
        }
    };
    text.into_bytes()
}

#[test]
fn host_functions_survive_arbitrary_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let id = ObjectId::new("NS", "fuzzed").unwrap();
    let services = ObjectServices {
        storage: ObjectStorage::open(dir.path(), &id).unwrap(),
        stubs: Arc::new(NoStubs),
        alarms: Arc::new(AlarmIndex::open(dir.path(), &[dir.path()]).unwrap()),
        memory_budget: Some(Arc::new(crate::engine::MemoryBudget::new(1 << 30))),
    };
    let limits = Limits {
        max_storage_bytes: 256 * 1024,
        ..Limits::default()
    };
    let host = HostContext::for_object(
        id,
        services,
        limits,
        Arc::new(ClassMap::default()),
        SharedClock::default(),
    );

    let engine = Engine::default();
    let mut linker = Linker::new(&engine);
    super::add_to_linker(&mut linker).unwrap();
    let module = Module::new(&engine, wat::parse_str(PROBE).unwrap()).unwrap();
    let mut store = Store::new(&engine, ActorState::new(host));
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let call: TypedFunc<(i32, i32), i32> = instance.get_typed_func(&mut store, "call").unwrap();
    let response: TypedFunc<(i32, i32), i32> =
        instance.get_typed_func(&mut store, "response").unwrap();
    let log: TypedFunc<(i32, i32, i32), ()> = instance.get_typed_func(&mut store, "log").unwrap();

    // The calls run inside one dispatch's transaction, as a guest's do.
    store
        .data_mut()
        .host
        .storage
        .as_mut()
        .unwrap()
        .begin()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let (mut answered, mut trapped) = (0, 0);
    for _ in 0..3_000 {
        let request = requests(&mut rng);
        let len = i32::try_from(request.len()).unwrap();
        let at = rng.random_range(0..MEMORY_BYTES - len.min(MEMORY_BYTES - 1));
        let _ = memory.write(&mut store, at as usize, &request);
        let (ptr, len) = match rng.random_range(0..8) {
            0 => (rng.random::<i32>(), rng.random::<i32>()),
            1 => (at, -1),
            2 => (MEMORY_BYTES - 1, len.max(2)),
            _ => (at, len),
        };
        match call.call(&mut store, (ptr, len)) {
            Ok(answer_len) => {
                let (out, out_len) = match rng.random_range(0..6) {
                    0 => (rng.random::<i32>(), answer_len),
                    1 => (0, answer_len.saturating_add(1)),
                    _ => (0, answer_len),
                };
                match response.call(&mut store, (out, out_len)) {
                    Ok(_) => answered += 1,
                    Err(_) => trapped += 1,
                }
            }
            Err(_) => trapped += 1,
        }
        if rng.random_range(0..10) == 0 {
            let answer_twice = response.call(&mut store, (0, 8));
            assert!(answer_twice.is_err(), "an answer is fetched once");
        }
        let level = rng.random_range(-2..6);
        let _ = log.call(
            &mut store,
            (level, rng.random::<i32>(), rng.random::<i32>()),
        );
        let _ = log.call(&mut store, (level, at, len.clamp(0, MEMORY_BYTES - at)));
    }
    assert!(
        answered > 1_000 && trapped > 100,
        "{answered} answered, {trapped} trapped"
    );

    // The object's storage still works, and holds only what fit its quota.
    let host = &mut store.data_mut().host;
    let storage = host.storage.as_mut().unwrap();
    storage.rollback();
    assert!(storage.used_bytes().unwrap() < 512 * 1024);
    storage.begin().unwrap();
    storage.put("after", "1").unwrap();
    storage.end(true).unwrap();
    storage.commit().unwrap();
    assert_eq!(storage.get("after").unwrap().as_deref(), Some("1"));
}
