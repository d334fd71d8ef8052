//! Paths of the plugins compiled by this crate's build script: the first-party plugins under
//! `plugins/` and the hostile plugins used by the conformance suite.
//!
//! ```
//! let bytes = std::fs::read(outpost_artifacts::ECHO_PIPELINE).unwrap();
//! assert_eq!(&bytes[..4], b"\0asm");
//! ```

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The bytes of the first-party plugins that ship inside the `outpost` binary, by file name.
pub const BUNDLED: &[(&str, &[u8])] = &[
    (
        "echo-pipeline.wasm",
        include_bytes!(concat!(env!("OUT_DIR"), "/echo_pipeline.wasm")),
    ),
    (
        "hello-job.wasm",
        include_bytes!(concat!(env!("OUT_DIR"), "/hello-job.wasm")),
    ),
    (
        "hello-http.wasm",
        include_bytes!(concat!(env!("OUT_DIR"), "/hello_http.wasm")),
    ),
    (
        "ocr-pipeline.wasm",
        include_bytes!(concat!(env!("OUT_DIR"), "/ocr_pipeline.wasm")),
    ),
    (
        "vad-pipeline.wasm",
        include_bytes!(concat!(env!("OUT_DIR"), "/vad_pipeline.wasm")),
    ),
];
