//! The requests a guest sends through `host_call`, and their answers.
//!
//! A request is JSON `{"op": ..., ...}`. The answer is `=` and then the
//! value's JSON, or `!` and then `{"code","message","name"}` (the error's
//! name is `null` for a plain `Error`); a marker rather than an envelope
//! object, so the guest parses only the value.
//! For the reference API, keys are trimmed of surrounding white space and
//! must not be empty; Cloudflare-flavour keys are used exactly as given
//! (the empty string too). Keys and values are checked against the
//! configured size limits.

use serde::Deserialize;
use serde_json::{Value, json};

use std::sync::Arc;

use super::{HostContext, StubDispatcher};
use crate::{
    bundle::Api,
    envelope::{DispatchKind, FetchRequest},
    error::{DispatchError, ErrorCode},
    id::ObjectId,
    storage::{
        AlarmRow, ListQuery, ObjectStorage, SqlBounds, SqlError, value_from_json, value_to_json,
    },
};

/// One request from the guest.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", deny_unknown_fields)]
enum HostRequest {
    /// `storage.get(key)`: the stored JSON text, or null.
    Get { key: String },
    /// `storage.get([keys])`: `[[key, json], ...]` of the keys that exist,
    /// in key order.
    GetMany { keys: Vec<String> },
    /// `storage.put(key, value)`: `value` is JSON text.
    Put { key: String, value: String },
    /// `storage.delete(key)`: whether the key existed.
    Delete { key: String },
    /// `storage.list(options)`: `[[key, json], ...]` in key order.
    List {
        prefix: Option<String>,
        start: Option<String>,
        #[serde(rename = "startAfter")]
        start_after: Option<String>,
        end: Option<String>,
        #[serde(default)]
        reverse: bool,
        limit: Option<u64>,
    },
    /// `storage.deleteAll()`: how many keys were removed.
    DeleteAll,
    /// `storage.transaction(fn)` opens a savepoint...
    TransactionBegin,
    /// ...and keeps its writes...
    TransactionCommit,
    /// ...or drops them.
    TransactionRollback,
    /// `storage.setAlarm(time)`: `time` in milliseconds since the epoch.
    SetAlarm { time: f64 },
    /// `storage.getAlarm()`: the due time, or null.
    GetAlarm,
    /// `storage.deleteAlarm()`.
    DeleteAlarm,
    /// `ctx.storage.sql.exec(query, ...bindings)`: the last statement's
    /// columns and rows, and the rows read and written.
    SqlExec { query: String, bindings: Vec<Value> },
    /// `ctx.storage.sql.databaseSize`: bytes.
    SqlDatabaseSize,
    /// `crypto.getRandomValues` and friends: `len` random bytes as hex.
    RandomBytes { len: usize },
    /// `env.NS.getByName(name)`: the validated id.
    ObjectId { namespace: String, name: String },
    /// `env.NS.idFromString(id)`: the object whose hash is `id` (64 hex
    /// digits) if one exists, else the unique object named `id`.
    IdFromString { namespace: String, id: String },
    /// `stub.rpc(method, args)`: `args` is a JSON array as text; the answer's
    /// value is the result as JSON text.
    Rpc {
        namespace: String,
        name: String,
        method: String,
        args: String,
        /// `args` is the structured-clone text of the argument array, and
        /// the answer the structured-clone text of the result (a
        /// Cloudflare-flavour stub).
        #[serde(default)]
        cloned: bool,
    },
    /// `stub.fetch(request)`: the target's response.
    Fetch {
        namespace: String,
        name: String,
        request: Box<FetchRequest>,
    },
}

/// Performs one request and encodes its answer.
pub(super) fn handle(host: &mut HostContext, request: &[u8]) -> Vec<u8> {
    let answer = match serde_json::from_slice::<HostRequest>(request) {
        Ok(request) => perform(host, request),
        Err(e) => Err(DispatchError::bad_request(format!("malformed host request: {e}")).into()),
    };
    let (marker, body) = match answer {
        Ok(value) => (b'=', value),
        Err(Refusal { error, js_type }) => (
            b'!',
            json!({ "code": error.code.as_str(), "message": error.message, "name": js_type }),
        ),
    };
    let mut encoded = vec![marker];
    serde_json::to_writer(&mut encoded, &body).expect("JSON values always encode");
    encoded
}

/// Why a request failed, as JavaScript will see it: the error, and the
/// kind of exception when it is not a plain `Error`.
struct Refusal {
    error: DispatchError,
    js_type: Option<&'static str>,
}

impl From<DispatchError> for Refusal {
    fn from(error: DispatchError) -> Self {
        Self {
            error,
            js_type: None,
        }
    }
}

/// A size limit refused the request: a `RangeError` (`bad_request`),
/// thrown before anything is written.
fn range_error(message: String) -> Refusal {
    Refusal {
        error: DispatchError::bad_request(message),
        js_type: Some("RangeError"),
    }
}

fn perform(host: &mut HostContext, request: HostRequest) -> Result<Value, Refusal> {
    match request {
        HostRequest::Get { key } => {
            // A key too long to store cannot be there.
            let Some(key) = readable_key(host, &key)? else {
                return Ok(Value::Null);
            };
            Ok(storage(host)?
                .get(key)
                .map_err(storage_error)?
                .map_or(Value::Null, Value::String))
        }
        HostRequest::GetMany { keys } => {
            let storage = storage(host)?;
            let mut found = Vec::new();
            for key in &keys {
                let Some(key) = readable_key(host, key)? else {
                    continue;
                };
                if let Some(value) = storage.get(key).map_err(storage_error)? {
                    found.push((key.to_string(), value));
                }
            }
            found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            found.dedup_by(|a, b| a.0 == b.0);
            Ok(found
                .into_iter()
                .map(|(k, v)| Value::Array(vec![Value::String(k), Value::String(v)]))
                .collect())
        }
        HostRequest::Put { key, value } => {
            let key = checked_key(host, &key)?;
            if value.len() > host.limits.max_value_bytes {
                return Err(range_error(format!(
                    "value for key {key:?} is {} bytes of JSON, over the limit of {}",
                    value.len(),
                    host.limits.max_value_bytes
                )));
            }
            let storage = storage(host)?;
            let used = storage.used_bytes().map_err(storage_error)?;
            let adding = (key.len() + value.len()) as u64;
            let quota = host.limits.max_storage_bytes;
            if used.saturating_add(adding) > quota {
                return Err(DispatchError::new(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "storage is full: the object holds {used} bytes and may hold {quota} \
                         (--max-storage-bytes); delete keys to make room"
                    ),
                )
                .into());
            }
            storage.put(key, &value).map_err(storage_error)?;
            Ok(Value::Null)
        }
        HostRequest::Delete { key } => {
            let Some(key) = readable_key(host, &key)? else {
                return Ok(Value::Bool(false));
            };
            Ok(Value::Bool(
                storage(host)?.delete(key).map_err(storage_error)?,
            ))
        }
        HostRequest::List {
            prefix,
            start,
            start_after,
            end,
            reverse,
            limit,
        } => {
            let query = ListQuery {
                prefix,
                start,
                start_after,
                end,
                reverse,
                limit,
            };
            let Some(entries) = storage(host)?
                .list_within(&query, MAX_LIST_BYTES)
                .map_err(storage_error)?
            else {
                return Err(range_error(format!(
                    "list() would return more than {} MiB of keys and values; pass a limit \
                     or a narrower range",
                    MAX_LIST_BYTES / 1024 / 1024
                )));
            };
            Ok(entries
                .into_iter()
                .map(|(k, v)| Value::Array(vec![Value::String(k), Value::String(v)]))
                .collect())
        }
        HostRequest::DeleteAll => Ok(Value::from(
            storage(host)?.delete_all().map_err(storage_error)?,
        )),
        HostRequest::TransactionBegin => {
            storage_mut(host)?.savepoint().map_err(storage_error)?;
            Ok(Value::Null)
        }
        HostRequest::TransactionCommit => {
            storage_mut(host)?
                .release_savepoint()
                .map_err(storage_error)?;
            Ok(Value::Null)
        }
        HostRequest::TransactionRollback => {
            storage_mut(host)?
                .rollback_savepoint()
                .map_err(storage_error)?;
            Ok(Value::Null)
        }
        HostRequest::SetAlarm { time } => {
            set_alarm(host, time)?;
            Ok(Value::Null)
        }
        HostRequest::GetAlarm => {
            let alarm = storage(host)?.alarm().map_err(storage_error)?;
            Ok(alarm.map_or(Value::Null, |alarm| {
                Value::from(guest_alarm_time(host, alarm.due_ms))
            }))
        }
        HostRequest::DeleteAlarm => {
            storage(host)?.delete_alarm().map_err(storage_error)?;
            host.alarm_changed = true;
            Ok(Value::Null)
        }
        HostRequest::SqlExec { query, bindings } => {
            let bindings = bindings
                .iter()
                .map(value_from_json)
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_error)?;
            let bounds = SqlBounds {
                deadline: host.call.deadline,
                max_value_bytes: host.limits.max_value_bytes,
                max_storage_bytes: host.limits.max_storage_bytes,
            };
            let outcome = storage_mut(host)?
                .exec_user_sql(&query, &bindings, &bounds)
                .map_err(sql_error)?;
            let rows: Vec<Value> = outcome
                .rows
                .iter()
                .map(|row| row.iter().map(value_to_json).collect())
                .collect();
            Ok(json!({
                "columns": outcome.columns,
                "rows": rows,
                "rowsRead": outcome.rows_read,
                "rowsWritten": outcome.rows_written,
            }))
        }
        HostRequest::SqlDatabaseSize => Ok(Value::from(
            storage(host)?.database_size().map_err(sql_error)?,
        )),
        HostRequest::RandomBytes { len } => {
            if len > MAX_RANDOM_BYTES {
                return Err(range_error(format!(
                    "at most {MAX_RANDOM_BYTES} random bytes per call, asked for {len}"
                )));
            }
            Ok(Value::String(super::time::random_hex(
                &mut host.random,
                len,
            )))
        }
        HostRequest::ObjectId { namespace, name } => {
            let id = stub_target(host, &namespace, &name)?;
            if host.classes.api() == Api::Cloudflare {
                // Its string may come back through idFromString.
                stubs(host)?.record_name(&id)?;
            }
            Ok(serde_json::to_value(&id).expect("ids encode as JSON"))
        }
        HostRequest::IdFromString { namespace, id } => {
            if id.len() != 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(DispatchError::bad_request(
                    "Invalid Durable Object ID: must be 64 hex digits",
                )
                .into());
            }
            let unique = stub_target(host, &namespace, &id)?;
            let found = stubs(host)?.find_object(unique.namespace(), &id);
            let id = found.unwrap_or(unique);
            Ok(serde_json::to_value(&id).expect("ids encode as JSON"))
        }
        HostRequest::Rpc {
            namespace,
            name,
            method,
            args,
            cloned,
        } => {
            let target = stub_target(host, &namespace, &name)?;
            let kind = if cloned {
                DispatchKind::CloneRpc { method, args }
            } else {
                let args: Vec<Value> = serde_json::from_str(&args).map_err(|e| {
                    DispatchError::bad_request(format!("stub arguments are not a JSON array: {e}"))
                })?;
                DispatchKind::Rpc { method, args }
            };
            Ok(Value::String(stubs(host)?.call(&host.call, target, kind)?))
        }
        HostRequest::Fetch {
            namespace,
            name,
            request,
        } => {
            let target = stub_target(host, &namespace, &name)?;
            let response = stubs(host)?.fetch(&host.call, target, *request)?;
            Ok(serde_json::to_value(response).expect("responses encode as JSON"))
        }
    }
}

/// The most bytes of keys and values one `list` returns.
const MAX_LIST_BYTES: usize = 32 * 1024 * 1024;

/// The most random bytes one request returns (the Web Crypto limit of
/// `getRandomValues`).
const MAX_RANDOM_BYTES: usize = 65_536;

/// The largest alarm time accepted: the last instant a JavaScript `Date`
/// can represent.
const MAX_ALARM_MS: f64 = 8_640_000_000_000_000.0;

/// Stores the alarm after making sure the index will wake the object by
/// then, so that a crash between the two can never lose it.
fn set_alarm(host: &mut HostContext, time: f64) -> Result<(), DispatchError> {
    if !(1.0..=MAX_ALARM_MS).contains(&time) {
        return Err(DispatchError::bad_request(format!(
            "setAlarm needs a positive time in milliseconds since the epoch, got {time}"
        )));
    }
    let due_ms = host_alarm_time(host, time.trunc() as u64);
    let alarms = host.alarms.clone().ok_or_else(|| {
        DispatchError::bad_request("alarms are not available while the bundle loads")
    })?;
    alarms
        .ensure_due_by(&host.id, due_ms)
        .map_err(storage_error)?;
    let alarm = AlarmRow {
        due_ms,
        retry_count: 0,
    };
    storage(host)?.set_alarm(alarm).map_err(storage_error)?;
    host.alarm_changed = true;
    Ok(())
}

/// The host time of an alarm the guest sets for `guest_ms` (the same
/// outside deterministic mode).
fn host_alarm_time(host: &HostContext, guest_ms: u64) -> u64 {
    match host.logical_offset_ms {
        Some(offset) => guest_ms.saturating_add_signed(offset).max(1),
        None => guest_ms,
    }
}

/// The guest's time of an alarm due at host time `due_ms`.
fn guest_alarm_time(host: &HostContext, due_ms: u64) -> u64 {
    match host.logical_offset_ms {
        Some(offset) => due_ms.saturating_add_signed(offset.saturating_neg()).max(1),
        None => due_ms,
    }
}

fn stubs(host: &HostContext) -> Result<Arc<dyn StubDispatcher>, DispatchError> {
    host.stubs
        .clone()
        .ok_or_else(|| DispatchError::bad_request("stubs are not available while the bundle loads"))
}

fn storage(host: &HostContext) -> Result<&ObjectStorage, DispatchError> {
    host.storage.as_ref().ok_or_else(|| {
        DispatchError::bad_request("storage is not available while the bundle loads")
    })
}

fn storage_mut(host: &mut HostContext) -> Result<&mut ObjectStorage, DispatchError> {
    host.storage.as_mut().ok_or_else(|| {
        DispatchError::bad_request("storage is not available while the bundle loads")
    })
}

/// A failed SQL statement: a plain `Error` the object's code can catch,
/// not a runtime error.
fn sql_error(e: SqlError) -> Refusal {
    Refusal {
        error: DispatchError::new(ErrorCode::ExecutionError, e.0),
        js_type: Some("SqlError"),
    }
}

fn storage_error(e: crate::storage::StorageError) -> DispatchError {
    DispatchError::new(ErrorCode::StorageError, e.to_string())
}

/// Trims a key for reading: `None` when it is too long to have been stored.
fn readable_key<'k>(host: &HostContext, key: &'k str) -> Result<Option<&'k str>, Refusal> {
    match checked_key(host, key) {
        Ok(key) => Ok(Some(key)),
        Err(refusal) if refusal.js_type.is_some() => Ok(None),
        Err(refusal) => Err(refusal),
    }
}

/// Checks a key is not too long; a reference-API key is trimmed and must
/// not be empty.
fn checked_key<'k>(host: &HostContext, key: &'k str) -> Result<&'k str, Refusal> {
    let key = match host.classes.api() {
        Api::Reference => key.trim(),
        Api::Cloudflare => key,
    };
    if key.is_empty() && host.classes.api() == Api::Reference {
        return Err(DispatchError::bad_request("storage key must not be empty").into());
    }
    if key.len() > host.limits.max_key_bytes {
        return Err(range_error(format!(
            "storage key is {} bytes, over the limit of {}",
            key.len(),
            host.limits.max_key_bytes
        )));
    }
    Ok(key)
}

fn stub_target(host: &HostContext, namespace: &str, name: &str) -> Result<ObjectId, DispatchError> {
    let id =
        ObjectId::new(namespace, name).map_err(|e| DispatchError::bad_request(e.to_string()))?;
    if host.classes.class_for(id.namespace()).is_none() {
        return Err(DispatchError::new(
            ErrorCode::UnknownNamespace,
            format!("unknown durable object namespace {}", id.namespace()),
        ));
    }
    Ok(id)
}
