//! The Outpost plugin SDK: write a plugin as a plain Rust type, the SDK does the bindings.
//!
//! Enable the cargo feature of the world you implement (`pipeline`, `tiering-policy`,
//! `network-function`); jobs (`wasi:cli/command`) need no feature and use `fn main`. Every
//! plugin can use the host helpers in [`log`], [`config`], [`bus`] and [`kv`]; each works only if
//! the operator granted it (the host refuses to load a plugin that imports an ungranted
//! interface).
//!
//! ```ignore
//! use outpost_sdk::pipeline::{Guest, Message};
//!
//! struct Upper;
//!
//! impl Guest for Upper {
//!     fn handle(topic: String, payload: Vec<u8>) -> Result<Vec<Message>, String> {
//!         outpost_sdk::log::info(&format!("message on {topic}"));
//!         Ok(vec![Message { topic: "upper".into(), payload: payload.to_ascii_uppercase() }])
//!     }
//! }
//!
//! outpost_sdk::export_pipeline!(Upper);
//! ```

#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

/// Raw bindings for the host interfaces, shared by every world.
#[doc(hidden)]
pub mod host {
    wit_bindgen::generate!({
        world: "imports",
        path: "../wit",
        runtime_path: "wit_bindgen::rt",
    });
}

pub use host::outpost::plugin::bus::BusError;
pub use host::outpost::plugin::kv::KvError;
pub use host::outpost::plugin::shares::ShareError;

#[cfg(feature = "network-function")]
pub use network_function::export_network_function;
#[cfg(feature = "pipeline")]
pub use pipeline::export_pipeline;
#[cfg(feature = "tiering-policy")]
pub use tiering_policy::export_tiering_policy;

/// Bindings for the `pipeline` world: implement [`pipeline::Guest`], then call
/// [`export_pipeline!`].
#[cfg(feature = "pipeline")]
pub mod pipeline {
    wit_bindgen::generate!({
        world: "pipeline",
        path: "../wit",
        runtime_path: "wit_bindgen::rt",
        with: {
            "outpost:plugin/log@0.1.0": crate::host::outpost::plugin::log,
            "outpost:plugin/config@0.1.0": crate::host::outpost::plugin::config,
            "outpost:plugin/bus@0.1.0": crate::host::outpost::plugin::bus,
            "outpost:plugin/kv@0.1.0": crate::host::outpost::plugin::kv,
            "outpost:plugin/shares@0.1.0": crate::host::outpost::plugin::shares,
            "wasi:nn/tensor@0.2.0-rc-2024-10-28": generate,
            "wasi:nn/graph@0.2.0-rc-2024-10-28": generate,
            "wasi:nn/inference@0.2.0-rc-2024-10-28": generate,
            "wasi:nn/errors@0.2.0-rc-2024-10-28": generate,
        },
        pub_export_macro: true,
        export_macro_name: "export_pipeline",
        default_bindings_module: "outpost_sdk::pipeline",
    });
}

/// Bindings for the `tiering-policy` world: implement [`tiering_policy::Guest`], then call
/// [`export_tiering_policy!`].
#[cfg(feature = "tiering-policy")]
pub mod tiering_policy {
    wit_bindgen::generate!({
        world: "tiering-policy",
        path: "../wit",
        runtime_path: "wit_bindgen::rt",
        with: {
            "outpost:plugin/log@0.1.0": crate::host::outpost::plugin::log,
            "outpost:plugin/config@0.1.0": crate::host::outpost::plugin::config,
            "outpost:plugin/kv@0.1.0": crate::host::outpost::plugin::kv,
        },
        pub_export_macro: true,
        export_macro_name: "export_tiering_policy",
        default_bindings_module: "outpost_sdk::tiering_policy",
    });
}

/// Bindings for the `network-function` world: implement [`network_function::Guest`], then
/// call [`export_network_function!`].
#[cfg(feature = "network-function")]
pub mod network_function {
    wit_bindgen::generate!({
        world: "network-function",
        path: "../wit",
        runtime_path: "wit_bindgen::rt",
        with: {
            "outpost:plugin/log@0.1.0": crate::host::outpost::plugin::log,
            "outpost:plugin/config@0.1.0": crate::host::outpost::plugin::config,
        },
        pub_export_macro: true,
        export_macro_name: "export_network_function",
        default_bindings_module: "outpost_sdk::network_function",
    });
    pub use outpost::plugin::nf_io;
    pub use outpost::plugin::packet_types;
    pub use outpost::plugin::tables::{Table, open as open_table};
}

/// Inference through `wasi:nn` (pipeline plugins): load a model the operator granted by name,
/// feed tensors, read tensors back. The host picks the engine (ONNX Runtime or tract) and the
/// execution target (CPU or GPU); the plugin only names the model.
///
/// ```ignore
/// let model = outpost_sdk::nn::Model::load("squeezenet")?;
/// let mut ctx = model.context()?;
/// let outputs = ctx.compute(&[("data", Input::f32(&[1, 3, 224, 224], &pixels))])?;
/// let scores = outputs[0].to_f32()?;
/// ```
#[cfg(feature = "pipeline")]
pub mod nn {
    use alloc::format;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;
    use core::fmt;

    pub use crate::pipeline::wasi::nn::errors::ErrorCode;
    pub use crate::pipeline::wasi::nn::tensor::TensorType;
    use crate::pipeline::wasi::nn::{errors, graph, inference, tensor};

    /// A failed `wasi:nn` call: the spec's error code and the host's explanation.
    #[derive(Debug, Clone, PartialEq)]
    pub struct NnError {
        /// The `wasi:nn` error code.
        pub code: ErrorCode,
        /// What the host said went wrong.
        pub message: String,
    }

    impl NnError {
        fn from_resource(error: errors::Error) -> Self {
            NnError {
                code: error.code(),
                message: error.data(),
            }
        }
        /// An error raised by the plugin itself (a malformed output, say).
        pub fn plugin(message: impl Into<String>) -> Self {
            NnError {
                code: ErrorCode::InvalidArgument,
                message: message.into(),
            }
        }
    }

    /// The spec's name of an error code, in `PascalCase` (`InvalidArgument`, `NotFound`, ...).
    pub fn code_name(code: ErrorCode) -> &'static str {
        match code {
            ErrorCode::InvalidArgument => "InvalidArgument",
            ErrorCode::InvalidEncoding => "InvalidEncoding",
            ErrorCode::Timeout => "Timeout",
            ErrorCode::RuntimeError => "RuntimeError",
            ErrorCode::UnsupportedOperation => "UnsupportedOperation",
            ErrorCode::TooLarge => "TooLarge",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::Security => "Security",
            ErrorCode::Unknown => "Unknown",
        }
    }

    impl fmt::Display for NnError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}: {}", code_name(self.code), self.message)
        }
    }

    /// A model (graph) loaded by name from the host's registry.
    pub struct Model {
        graph: graph::Graph,
    }

    impl Model {
        /// Loads the model the manifest declares as `name` (it must be in `grants.models`).
        pub fn load(name: &str) -> Result<Model, NnError> {
            graph::load_by_name(name)
                .map(|graph| Model { graph })
                .map_err(NnError::from_resource)
        }

        /// Loads a model from bytes (needs `grants.nn.load_bytes`; the host caps the size).
        pub fn from_onnx_bytes(bytes: &[u8]) -> Result<Model, NnError> {
            let builders = [bytes.to_vec()];
            graph::load(
                &builders,
                graph::GraphEncoding::Onnx,
                graph::ExecutionTarget::Cpu,
            )
            .map(|graph| Model { graph })
            .map_err(NnError::from_resource)
        }

        /// A new execution context for this model.
        pub fn context(&self) -> Result<Context, NnError> {
            self.graph
                .init_execution_context()
                .map(|ctx| Context { ctx })
                .map_err(NnError::from_resource)
        }
    }

    /// An execution context: where inference runs.
    pub struct Context {
        ctx: inference::GraphExecutionContext,
    }

    /// An input tensor: element type, dimensions and little-endian element bytes.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Input {
        /// Element type.
        pub ty: TensorType,
        /// Dimensions.
        pub dims: Vec<u32>,
        /// Little-endian element bytes.
        pub data: Vec<u8>,
    }

    macro_rules! input_ctor {
        ($name:ident, $t:ty, $ty:expr) => {
            #[doc = concat!("A tensor of `", stringify!($t), "` elements.")]
            pub fn $name(dims: &[u32], values: &[$t]) -> Input {
                let mut data = Vec::with_capacity(values.len() * core::mem::size_of::<$t>());
                for v in values {
                    data.extend_from_slice(&v.to_le_bytes());
                }
                Input {
                    ty: $ty,
                    dims: dims.to_vec(),
                    data,
                }
            }
        };
    }

    impl Input {
        input_ctor!(f32, f32, TensorType::Fp32);
        input_ctor!(f64, f64, TensorType::Fp64);
        input_ctor!(i32, i32, TensorType::I32);
        input_ctor!(i64, i64, TensorType::I64);

        /// A tensor of `u8` elements.
        pub fn u8(dims: &[u32], values: &[u8]) -> Input {
            Input {
                ty: TensorType::U8,
                dims: dims.to_vec(),
                data: values.to_vec(),
            }
        }

        /// A tensor from raw parts (any element type, including f16 and bf16).
        pub fn raw(ty: TensorType, dims: &[u32], data: Vec<u8>) -> Input {
            Input {
                ty,
                dims: dims.to_vec(),
                data,
            }
        }
    }

    /// An output tensor, copied out of the host.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Output {
        /// The output's name in the model.
        pub name: String,
        /// Element type.
        pub ty: TensorType,
        /// Dimensions.
        pub dims: Vec<u32>,
        /// Little-endian element bytes.
        pub data: Vec<u8>,
    }

    macro_rules! output_reader {
        ($name:ident, $t:ty, $ty:pat) => {
            #[doc = concat!("The elements as `", stringify!($t), "` (the type must match).")]
            pub fn $name(&self) -> Result<Vec<$t>, NnError> {
                if !matches!(self.ty, $ty) {
                    return Err(NnError::plugin(format!(
                        "output {} is {:?}, not {}",
                        self.name,
                        self.ty,
                        stringify!($t)
                    )));
                }
                const N: usize = core::mem::size_of::<$t>();
                Ok(self
                    .data
                    .chunks_exact(N)
                    .map(|c| {
                        let mut b = [0u8; N];
                        b.copy_from_slice(c);
                        <$t>::from_le_bytes(b)
                    })
                    .collect())
            }
        };
    }

    impl Output {
        output_reader!(to_f32, f32, TensorType::Fp32);
        output_reader!(to_f64, f64, TensorType::Fp64);
        output_reader!(to_i32, i32, TensorType::I32);
        output_reader!(to_i64, i64, TensorType::I64);

        /// Number of elements the dimensions describe.
        pub fn len(&self) -> usize {
            self.dims.iter().map(|d| *d as usize).product()
        }

        /// Whether the tensor has no elements.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    }

    impl Context {
        /// Runs the model on named inputs and returns every output, in the model's order.
        pub fn compute(&mut self, inputs: &[(&str, Input)]) -> Result<Vec<Output>, NnError> {
            let named: Vec<(String, tensor::Tensor)> = inputs
                .iter()
                .map(|(name, input)| {
                    (
                        name.to_string(),
                        tensor::Tensor::new(&input.dims, input.ty, &input.data),
                    )
                })
                .collect();
            let outputs = self.ctx.compute(named).map_err(NnError::from_resource)?;
            Ok(outputs
                .into_iter()
                .map(|(name, t)| Output {
                    name,
                    ty: t.ty(),
                    dims: t.dimensions(),
                    data: t.data(),
                })
                .collect())
        }
    }
}

/// Structured logging into the host's log, tagged with the plugin's name.
pub mod log {
    use crate::host::outpost::plugin::log::{Level, log};

    /// Logs at trace level.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The plugin's configuration block from the manifest.
pub mod config {
    use super::*;
    use crate::host::outpost::plugin::config as raw;

    /// The value for `key`, if set.
    pub fn get(key: &str) -> Option<String> {
        raw::get(key)
    }
    /// The value for `key`, or `default` when unset.
    pub fn get_or(key: &str, default: &str) -> String {
        raw::get(key).unwrap_or_else(|| String::from(default))
    }
    /// All configured keys, sorted.
    pub fn keys() -> Vec<String> {
        raw::keys()
    }
}

/// Publishing on the host's message bus (granted topics only).
pub mod bus {
    use crate::BusError;
    use crate::host::outpost::plugin::bus as raw;

    /// Publishes `payload` on `topic`.
    pub fn publish(topic: &str, payload: &[u8]) -> Result<(), BusError> {
        raw::publish(topic, payload)
    }
}

/// Files in the shares the plugin was granted (`grants.shares`).
pub mod shares {
    use super::*;
    use crate::ShareError;
    use crate::host::outpost::plugin::shares as raw;

    /// Writes `data` to `path` in `share` (needs `grants.shares.<share> = "rw"`).
    pub fn write(share: &str, path: &str, data: &[u8]) -> Result<(), ShareError> {
        raw::write(share, path, data)
    }
    /// Reads the file at `path` in `share`; an evicted file is recalled.
    pub fn read(share: &str, path: &str) -> Result<Vec<u8>, ShareError> {
        raw::read(share, path)
    }
    /// The files of `share` under `prefix`, sorted.
    pub fn list(share: &str, prefix: &str) -> Result<Vec<String>, ShareError> {
        raw::list_files(share, prefix)
    }
}

/// The plugin's key-value namespace in the host's store.
pub mod kv {
    use super::*;
    use crate::KvError;
    use crate::host::outpost::plugin::kv as raw;

    /// The value under `key`.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        raw::get(key)
    }
    /// Stores `value` under `key`.
    pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
        raw::set(key, value)
    }
    /// Removes `key`; returns whether it existed.
    pub fn delete(key: &str) -> Result<bool, KvError> {
        raw::delete(key)
    }
    /// Keys starting with `prefix`, sorted.
    pub fn list_keys(prefix: &str) -> Result<Vec<String>, KvError> {
        raw::list_keys(prefix)
    }
    /// Reads a little-endian `u64` counter (0 when absent), adds `delta`, stores and returns it.
    pub fn increment(key: &str, delta: u64) -> Result<u64, KvError> {
        let current = match raw::get(key)? {
            Some(bytes) if bytes.len() == 8 => {
                let mut raw_bytes = [0u8; 8];
                raw_bytes.copy_from_slice(&bytes);
                u64::from_le_bytes(raw_bytes)
            }
            _ => 0,
        };
        let next = current.wrapping_add(delta);
        raw::set(key, &next.to_le_bytes())?;
        Ok(next)
    }
}
