//! Checked access to a guest's linear memory.
//!
//! Pointers and lengths come from untrusted code: each access is
//! bounds-checked against the exported memory, and any violation is an error
//! that traps the guest, never a host panic.

use go_go_objects_abi::names;
use wasmtime::{Caller, Extern, Memory, bail, format_err};

use super::ActorState;

fn guest_memory(caller: &mut Caller<'_, ActorState>) -> wasmtime::Result<Memory> {
    match caller.get_export(names::EXPORT_MEMORY) {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => bail!("guest broke the ABI: it exports no memory"),
    }
}

fn range(ptr: i32, len: i32, max: usize) -> wasmtime::Result<(usize, usize)> {
    let start =
        u32::try_from(ptr).map_err(|_| format_err!("guest broke the ABI: pointer {ptr}"))?;
    let len = u32::try_from(len).map_err(|_| format_err!("guest broke the ABI: length {len}"))?;
    if len as usize > max {
        bail!("guest broke the ABI: a message of {len} bytes exceeds {max}");
    }
    Ok((start as usize, len as usize))
}

/// Copies `ptr..ptr+len` out of guest memory, refusing more than `max` bytes.
pub(super) fn read(
    caller: &mut Caller<'_, ActorState>,
    ptr: i32,
    len: i32,
    max: usize,
) -> wasmtime::Result<Vec<u8>> {
    let (start, len) = range(ptr, len, max)?;
    let memory = guest_memory(caller)?;
    let mut buf = vec![0u8; len];
    memory
        .read(&*caller, start, &mut buf)
        .map_err(|_| format_err!("guest broke the ABI: {start}+{len} is outside its memory"))?;
    Ok(buf)
}

/// Copies `bytes` into guest memory at `ptr`.
pub(super) fn write(
    caller: &mut Caller<'_, ActorState>,
    ptr: i32,
    bytes: &[u8],
) -> wasmtime::Result<()> {
    let len = i32::try_from(bytes.len()).map_err(|_| format_err!("answer too large"))?;
    let (start, _) = range(ptr, len, usize::MAX)?;
    let memory = guest_memory(caller)?;
    memory
        .write(&mut *caller, start, bytes)
        .map_err(|_| format_err!("guest broke the ABI: {start}+{len} is outside its memory"))
}
