//! The host functions this guest imports, behind safe wrappers.

#[link(wasm_import_module = "go_go_objects")]
unsafe extern "C" {
    fn host_call(ptr: *const u8, len: i32) -> i32;
    fn host_response(ptr: *mut u8, len: i32) -> i32;
    fn log(level: i32, ptr: *const u8, len: i32);
    fn sleep(ms: i64);
}

/// Sends one JSON request to the host and returns its JSON answer.
///
/// The host answers every well-formed request, including failed ones (the
/// answer then carries an error code); a negative length means the host
/// rejected the request outright, which this wrapper reports as `None`.
pub fn call(request: &str) -> Option<String> {
    let len = i32::try_from(request.len()).ok()?;
    // SAFETY: the pointer and length describe `request`, which stays alive
    // and unmodified for the duration of the call.
    let answer_len = unsafe { host_call(request.as_ptr(), len) };
    let answer_len = usize::try_from(answer_len).ok()?;

    let mut answer = vec![0u8; answer_len];
    // SAFETY: `answer` is a writable buffer of exactly `answer_len` bytes.
    let written = unsafe { host_response(answer.as_mut_ptr(), answer_len as i32) };
    if usize::try_from(written).ok()? != answer_len {
        return None;
    }
    String::from_utf8(answer).ok()
}

/// Writes one console line to the host log.
pub fn write_log(level: i32, message: &str) {
    let len = i32::try_from(message.len()).unwrap_or(i32::MAX);
    // SAFETY: the pointer and length describe `message` (truncated length
    // never exceeds it), which stays alive for the call.
    unsafe { log(level, message.as_ptr(), len) }
}

/// Waits until a timer due in `ms` milliseconds (the host never waits past
/// the dispatch's deadline).
pub fn sleep_ms(ms: i64) {
    // SAFETY: takes and returns plain integers.
    unsafe { sleep(ms) }
}

#[cfg(test)]
mod tests {
    use go_go_objects_abi::names;

    #[test]
    fn link_attribute_matches_abi_module_name() {
        assert_eq!(names::IMPORT_MODULE, "go_go_objects");
    }
}
