//! Custom sections of wasm modules: where a pre-initialized bundle image
//! keeps what the host needs to know about it.

/// The bytes every wasm module starts with: magic and version 1.
const HEADER: &[u8; 8] = b"\0asm\x01\0\0\0";

/// The id of a custom section.
const CUSTOM: u8 = 0;

fn write_leb(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut n = 0usize;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        n |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// `wasm` with a custom section `name` holding `payload` appended.
pub(crate) fn append_custom_section(mut wasm: Vec<u8>, name: &str, payload: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(name.len() + payload.len() + 5);
    write_leb(&mut content, name.len());
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    wasm.push(CUSTOM);
    write_leb(&mut wasm, content.len());
    wasm.extend_from_slice(&content);
    wasm
}

/// The payload of the first custom section `name`, if the module is
/// well-formed enough to find it.
pub(crate) fn find_custom_section<'w>(wasm: &'w [u8], name: &str) -> Option<&'w [u8]> {
    if wasm.get(..8)? != HEADER {
        return None;
    }
    let mut at = 8;
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let size = read_leb(wasm, &mut at)?;
        let end = at.checked_add(size)?;
        let section = wasm.get(at..end)?;
        if id == CUSTOM {
            let mut inner = 0;
            let name_len = read_leb(section, &mut inner)?;
            let found = section.get(inner..inner + name_len)?;
            if found == name.as_bytes() {
                return section.get(inner + name_len..);
            }
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_appended() {
        let module = HEADER.to_vec();
        let big = vec![7u8; 300];
        let wasm = append_custom_section(append_custom_section(module, "a", b"one"), "b", &big);
        assert_eq!(find_custom_section(&wasm, "a"), Some(&b"one"[..]));
        assert_eq!(find_custom_section(&wasm, "b"), Some(&big[..]));
        assert_eq!(find_custom_section(&wasm, "c"), None);
        assert_eq!(find_custom_section(b"not wasm", "a"), None);
        assert!(wasmparser_free_validation(&wasm));
    }

    /// A module of only custom sections is valid wasm; wasmtime accepts it.
    fn wasmparser_free_validation(wasm: &[u8]) -> bool {
        wasmtime::Module::validate(&wasmtime::Engine::default(), wasm).is_ok()
    }
}
