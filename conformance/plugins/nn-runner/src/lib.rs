//! Conformance helper: runs models through the host's `wasi:nn` on tensors from the payload and
//! replies with every output, so host tests can drive inference end to end.
//!
//! Payloads and replies are tensor bundles (see [`bundle`]). Topics:
//!
//! - `nn/<model>`: load `<model>` by name, compute once, reply on `nn-result/<model>`.
//! - `nn-bytes/<label>`: the payload is a u64 LE model length, that many bytes of ONNX, then the
//!   input bundle; the model is loaded from the bytes; reply on `nn-result/<label>`.
//! - `nn-twice/<model>`: compute in one context, then again in a second context of the same
//!   model; reply with the second outputs on `nn-result/<model>`.
//! - `nn-reuse/<model>`: compute twice in the same context; reply with the second outputs.
//! - `nn-unchecked/<model>`: like `nn/`, but the input bundle's data lengths are not checked
//!   against the dims, so the host's own validation is what gets exercised.
//!
//! A `wasi:nn` failure comes back as `Err("<ErrorCode>: <host message>")`, e.g.
//! `InvalidArgument: ...` or `NotFound: ...`; a malformed payload as `Err("malformed ...")`.

pub mod bundle;

#[cfg(target_arch = "wasm32")]
mod glue {
    use crate::bundle::{self, Sizes, Tensor};
    use outpost_sdk::nn::{ErrorCode, Input, Model, NnError, Output, TensorType};
    use outpost_sdk::pipeline::{Guest, Message};

    struct Plugin;

    impl Guest for Plugin {
        fn handle(topic: String, payload: Vec<u8>) -> Result<Vec<Message>, String> {
            let (kind, name) = topic
                .split_once('/')
                .ok_or_else(|| format!("topic {topic:?} has no /<model> part"))?;
            let outputs = match kind {
                "nn" => run(&load(name)?, &inputs(&payload, Sizes::Checked)?, Runs::Once)?,
                "nn-unchecked" => run(
                    &load(name)?,
                    &inputs(&payload, Sizes::Unchecked)?,
                    Runs::Once,
                )?,
                "nn-twice" => run(
                    &load(name)?,
                    &inputs(&payload, Sizes::Checked)?,
                    Runs::TwoContexts,
                )?,
                "nn-reuse" => run(
                    &load(name)?,
                    &inputs(&payload, Sizes::Checked)?,
                    Runs::SameContextTwice,
                )?,
                "nn-bytes" => {
                    let mut cur = bundle::Cursor::new(&payload);
                    let len = cur.u64("model length").map_err(malformed)?;
                    let onnx = cur.bytes(len, "model bytes").map_err(malformed)?;
                    let tensors = inputs(cur.rest(), Sizes::Checked)?;
                    let model = Model::from_onnx_bytes(onnx).map_err(nn_error)?;
                    run(&model, &tensors, Runs::Once)?
                }
                _ => return Err(format!("unknown topic {topic:?}")),
            };
            let reply: Vec<Tensor> = outputs
                .into_iter()
                .map(|o: Output| Tensor {
                    name: o.name,
                    code: type_code(o.ty),
                    dims: o.dims,
                    data: o.data,
                })
                .collect();
            Ok(vec![Message {
                topic: format!("nn-result/{name}"),
                payload: bundle::encode(&reply)?,
            }])
        }
    }

    #[derive(Clone, Copy)]
    enum Runs {
        Once,
        TwoContexts,
        SameContextTwice,
    }

    fn load(name: &str) -> Result<Model, String> {
        Model::load(name).map_err(nn_error)
    }

    fn inputs(bytes: &[u8], sizes: Sizes) -> Result<Vec<(String, Input)>, String> {
        bundle::decode(bytes, sizes)
            .map_err(malformed)?
            .into_iter()
            .map(|t| {
                let ty = tensor_type(t.code)
                    .ok_or_else(|| malformed(format!("type code {} of {:?}", t.code, t.name)))?;
                Ok((t.name, Input::raw(ty, &t.dims, t.data)))
            })
            .collect()
    }

    fn run(model: &Model, inputs: &[(String, Input)], runs: Runs) -> Result<Vec<Output>, String> {
        let named: Vec<(&str, Input)> = inputs
            .iter()
            .map(|(name, input)| (name.as_str(), input.clone()))
            .collect();
        let mut ctx = model.context().map_err(nn_error)?;
        let first = ctx.compute(&named).map_err(nn_error)?;
        match runs {
            Runs::Once => Ok(first),
            Runs::TwoContexts => {
                let mut second = model.context().map_err(nn_error)?;
                second.compute(&named).map_err(nn_error)
            }
            Runs::SameContextTwice => ctx.compute(&named).map_err(nn_error),
        }
    }

    fn malformed(problem: String) -> String {
        format!("malformed payload: {problem}")
    }

    /// `<code>: <message>` with the code as its bare variant name, so a test can match the
    /// start of the string (the bindings' `Debug` would prefix `ErrorCode::`).
    fn nn_error(e: NnError) -> String {
        let code = match e.code {
            ErrorCode::InvalidArgument => "InvalidArgument",
            ErrorCode::InvalidEncoding => "InvalidEncoding",
            ErrorCode::Timeout => "Timeout",
            ErrorCode::RuntimeError => "RuntimeError",
            ErrorCode::UnsupportedOperation => "UnsupportedOperation",
            ErrorCode::TooLarge => "TooLarge",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::Security => "Security",
            ErrorCode::Unknown => "Unknown",
        };
        format!("{code}: {}", e.message)
    }

    fn tensor_type(code: u8) -> Option<TensorType> {
        Some(match code {
            0 => TensorType::Fp16,
            1 => TensorType::Fp32,
            2 => TensorType::Fp64,
            3 => TensorType::Bf16,
            4 => TensorType::U8,
            5 => TensorType::I32,
            6 => TensorType::I64,
            _ => return None,
        })
    }

    fn type_code(ty: TensorType) -> u8 {
        match ty {
            TensorType::Fp16 => 0,
            TensorType::Fp32 => 1,
            TensorType::Fp64 => 2,
            TensorType::Bf16 => 3,
            TensorType::U8 => 4,
            TensorType::I32 => 5,
            TensorType::I64 => 6,
        }
    }

    outpost_sdk::export_pipeline!(Plugin);
}
