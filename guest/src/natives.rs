//! Native helpers the prelude calls where JavaScript would be slow or
//! cannot see enough: base64 for the byte bodies that cross the host
//! boundary, and the forgiving base64 of `atob` and `btoa`.
//!
//! They are handed to the prelude's factory in one object and never become
//! globals, so a bundle reaches them only through the web classes built on
//! them.

use base64::{
    Engine as _, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::STANDARD},
};
use javy::quickjs::{ArrayBuffer, Ctx, Exception, Function, Object};

/// Base64 as `atob` reads it: padding optional, trailing bits ignored.
const FORGIVING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Creates the object of native helpers.
pub fn install<'js>(ctx: &Ctx<'js>) -> javy::quickjs::Result<Object<'js>> {
    let natives = Object::new(ctx.clone())?;

    // bytesToBase64(buffer, offset, length): standard base64 of a range.
    natives.set(
        "bytesToBase64",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, buffer: ArrayBuffer<'js>, offset: u32, length: u32| {
                let bytes = buffer
                    .as_bytes()
                    .ok_or_else(|| Exception::throw_type(&ctx, "the ArrayBuffer is detached"))?;
                let (start, len) = (offset as usize, length as usize);
                let range = start
                    .checked_add(len)
                    .and_then(|end| bytes.get(start..end))
                    .ok_or_else(|| Exception::throw_range(&ctx, "byte range out of bounds"))?;
                Ok::<_, javy::quickjs::Error>(STANDARD.encode(range))
            },
        )?,
    )?;

    // base64ToBytes(text): an ArrayBuffer, or null when `text` is not
    // (forgiving) base64.
    natives.set(
        "base64ToBytes",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, text: String| {
            match FORGIVING.decode(text.as_bytes()) {
                Ok(bytes) => ArrayBuffer::new(ctx, bytes).map(Some),
                Err(_) => Ok(None),
            }
        })?,
    )?;

    // utf8Length(text): the length of `text` in UTF-8, in bytes (a lone
    // surrogate counts three, as it will once replaced).
    natives.set(
        "utf8Length",
        Function::new(ctx.clone(), |text: String| text.len() as f64)?,
    )?;

    // latin1ToBase64(text): `btoa`; null when a character is above U+00FF.
    natives.set(
        "latin1ToBase64",
        Function::new(ctx.clone(), |text: String| -> Option<String> {
            let bytes = text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect::<Option<Vec<u8>>>()?;
            Some(STANDARD.encode(bytes))
        })?,
    )?;

    // base64ToLatin1(text): `atob` of text already stripped of white space;
    // null when it is not base64.
    natives.set(
        "base64ToLatin1",
        Function::new(ctx.clone(), |text: String| -> Option<String> {
            if text.len() % 4 == 1 {
                return None;
            }
            let bytes = FORGIVING.decode(text.as_bytes()).ok()?;
            Some(bytes.into_iter().map(char::from).collect())
        })?,
    )?;

    Ok(natives)
}
