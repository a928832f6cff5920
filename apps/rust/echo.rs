//! echo in Rust: the same server as apps/echo.c, written straight against the
//! uqbar ABI (docs/ABI.md) to show that any language producing a wasm32-wasi
//! command can be a uqbar process. Build (Debian's rustc and
//! libstd-rust-dev-wasm32): rustc --target wasm32-wasi -O echo.rs

#[link(wasm_import_module = "uqbar")]
extern "C" {
    fn receive(header: *mut Header) -> i32;
    fn msg_read(handle: i32, field: i32, offset: u32, buf: *mut u8, len: u32) -> i32;
    fn msg_free(handle: i32) -> i32;
    fn send(desc: *const SendDesc) -> i64;
}

/// The 56-byte message header written by `receive`.
#[repr(C)]
#[derive(Default)]
struct Header {
    handle: u32,
    kind: u32,
    id: u64,
    source_len: u32,
    body_len: u32,
    metadata_len: u32,
    context_len: u32,
    payload_len: u32,
    mime_len: u32,
    expects_response_s: u32,
    error: u32,
    flags: u32,
    reserved: u32,
}

/// The 64-byte descriptor read by `send`.
#[repr(C)]
#[derive(Default)]
struct SendDesc {
    kind: u32,
    handle: u32,
    target_ptr: u32,
    target_len: u32,
    body_ptr: u32,
    body_len: u32,
    metadata_ptr: u32,
    metadata_len: u32,
    context_ptr: u32,
    context_len: u32,
    payload_ptr: u32,
    payload_len: u32,
    mime_ptr: u32,
    mime_len: u32,
    expects_response_s: u32,
    flags: u32,
}

const KIND_REQUEST: u32 = 1;
const KIND_RESPONSE: u32 = 2;
const FIELD_BODY: i32 = 1;
const FLAG_INHERIT_PAYLOAD: u32 = 2;
const FLAG_AWAITED: u32 = 16;

fn main() {
    assert_eq!(std::mem::size_of::<Header>(), 56);
    assert_eq!(std::mem::size_of::<SendDesc>(), 64);
    loop {
        let mut h = Header::default();
        let handle = unsafe { receive(&mut h) };
        if handle < 0 {
            continue;
        }
        if h.kind == KIND_REQUEST && h.flags & FLAG_AWAITED != 0 {
            let mut body = vec![0u8; h.body_len as usize];
            let n = unsafe { msg_read(handle, FIELD_BODY, 0, body.as_mut_ptr(), h.body_len) };
            body.truncate(n.max(0) as usize);
            let d = SendDesc {
                kind: KIND_RESPONSE,
                handle: handle as u32,
                body_ptr: body.as_ptr() as u32,
                body_len: body.len() as u32,
                flags: FLAG_INHERIT_PAYLOAD,
                ..Default::default()
            };
            unsafe { send(&d) };
        }
        unsafe { msg_free(handle) };
    }
}
