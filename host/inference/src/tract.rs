//! The tract engine: pure Rust, built into the host, needs nothing installed. A model is
//! optimised once with its open dimensions left symbolic; when tract cannot do that for a model,
//! it is optimised per input shape instead (a small cache of plans). Plans run concurrently
//! (each run has its own state), so computes never wait on each other.

use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::error::{NnError, one_line};
use crate::stats::Overlap;
use crate::tensor::{ElemType, HostTensor, IoSpec, le_elements, to_le_bytes};
use crate::{Engine, EngineGraph};

type Plan = Arc<TypedRunnableModel>;

/// Plans kept per model when it must be optimised per input shape.
const SHAPE_CACHE: usize = 16;

enum Mode {
    Symbolic(Plan),
    PerShape {
        model: Box<InferenceModel>,
        plans: Mutex<Vec<(Vec<Vec<usize>>, Plan)>>,
    },
}

/// A model on tract.
pub(crate) struct TractGraph {
    name: String,
    mode: Mode,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    overlap: Overlap,
}

fn elem(dt: DatumType) -> Option<ElemType> {
    Some(match dt {
        DatumType::F16 => ElemType::F16,
        DatumType::F32 => ElemType::F32,
        DatumType::F64 => ElemType::F64,
        DatumType::U8 | DatumType::Bool => ElemType::U8,
        DatumType::I32 => ElemType::I32,
        DatumType::I64 => ElemType::I64,
        _ => return None,
    })
}

fn spec(name: String, fact: &InferenceFact) -> Result<IoSpec, String> {
    let dt = fact.datum_type.concretize();
    if fact.shape.is_open() {
        return Err(format!("{name} has no declared rank"));
    }
    let dims = fact
        .shape
        .dims()
        .map(|d| {
            d.concretize()
                .and_then(|d| d.to_i64().ok())
                .and_then(|d| u64::try_from(d).ok())
        })
        .collect();
    Ok(IoSpec {
        name,
        ty: dt.and_then(elem).filter(|_| dt != Some(DatumType::Bool)),
        engine_type: dt.map_or_else(|| "unknown".into(), |d| format!("{d:?}")),
        dims,
    })
}

impl TractGraph {
    pub(crate) fn load(name: &str, bytes: &[u8]) -> Result<TractGraph, String> {
        let model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .map_err(|e| one_line(&e))?;
        let declared_outputs: Vec<String> = tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .ok()
            .and_then(|proto| proto.graph)
            .map(|g| g.output.into_iter().map(|o| o.name).collect())
            .unwrap_or_default();
        let mut inputs = Vec::new();
        for (i, outlet) in model
            .input_outlets()
            .map_err(|e| one_line(&e))?
            .iter()
            .enumerate()
        {
            let fact = model.input_fact(i).map_err(|e| one_line(&e))?;
            inputs.push(spec(model.node(outlet.node).name.clone(), fact)?);
        }
        let mut outputs = Vec::new();
        for (i, outlet) in model
            .output_outlets()
            .map_err(|e| one_line(&e))?
            .iter()
            .enumerate()
        {
            let fact = model.output_fact(i).map_err(|e| one_line(&e))?;
            // The ONNX graph's own output names; tract's node names can differ.
            let label = declared_outputs
                .get(i)
                .cloned()
                .or_else(|| model.outlet_label(*outlet).map(str::to_string))
                .unwrap_or_else(|| model.node(outlet.node).name.clone());
            let mut s = spec(label.clone(), fact).unwrap_or_else(|_| IoSpec {
                name: label,
                ty: None,
                engine_type: "unknown".into(),
                dims: Vec::new(),
            });
            // Output types are only known for sure after running; keep what is declared.
            if s.ty.is_none() {
                s.engine_type = "unknown".into();
            }
            outputs.push(s);
        }
        let symbolic = model
            .clone()
            .into_optimized()
            .and_then(|m| m.into_runnable());
        let mode = match symbolic {
            Ok(plan) => Mode::Symbolic(plan),
            Err(e) => {
                tracing::info!(
                    model = name,
                    reason = %one_line(&e),
                    "tract cannot optimise this model with open dimensions; optimising per input shape"
                );
                Mode::PerShape {
                    model: Box::new(model),
                    plans: Mutex::new(Vec::new()),
                }
            }
        };
        Ok(TractGraph {
            name: name.to_string(),
            mode,
            inputs,
            outputs,
            overlap: Overlap::default(),
        })
    }

    fn plan_for(&self, inputs: &[Tensor]) -> Result<Plan, NnError> {
        match &self.mode {
            Mode::Symbolic(plan) => Ok(plan.clone()),
            Mode::PerShape { model, plans } => {
                let key: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
                if let Some((_, plan)) = plans
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .find(|(k, _)| *k == key)
                {
                    return Ok(plan.clone());
                }
                let mut m = (**model).clone();
                for (i, t) in inputs.iter().enumerate() {
                    m.set_input_fact(i, InferenceFact::dt_shape(t.datum_type(), t.shape()))
                        .map_err(|e| NnError::runtime(one_line(&e)))?;
                }
                let plan = m
                    .into_optimized()
                    .and_then(|m| m.into_runnable())
                    .map_err(|e| {
                        NnError::runtime(format!(
                            "model {}: tract cannot run shapes {key:?}: {}",
                            self.name,
                            one_line(&e)
                        ))
                    })?;
                let mut cache = plans.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= SHAPE_CACHE {
                    cache.remove(0);
                }
                cache.push((key, plan.clone()));
                Ok(plan)
            }
        }
    }
}

fn to_tensor(t: &HostTensor) -> Result<Tensor, NnError> {
    let fail = |e: TractError| NnError::runtime(format!("input {}: {}", t.name, one_line(&e)));
    match t.ty {
        ElemType::F32 => Tensor::from_shape(&t.dims, &le_elements(&t.data, f32::from_le_bytes)),
        ElemType::F64 => Tensor::from_shape(&t.dims, &le_elements(&t.data, f64::from_le_bytes)),
        ElemType::F16 => {
            Tensor::from_shape(&t.dims, &le_elements(&t.data, half::f16::from_le_bytes))
        }
        ElemType::U8 => Tensor::from_shape(&t.dims, &t.data),
        ElemType::I32 => Tensor::from_shape(&t.dims, &le_elements(&t.data, i32::from_le_bytes)),
        ElemType::I64 => Tensor::from_shape(&t.dims, &le_elements(&t.data, i64::from_le_bytes)),
        ElemType::Bf16 => {
            return Err(NnError::unsupported(format!(
                "input {}: tract has no bf16 tensors (run this model on onnxruntime)",
                t.name
            )));
        }
    }
    .map_err(fail)
}

fn from_tensor(name: &str, t: &Tensor) -> Result<HostTensor, NnError> {
    let fail = |e: TractError| NnError::runtime(format!("output {name}: {}", one_line(&e)));
    let view = t.try_as_plain_ram().map_err(fail)?;
    let (ty, data) = match t.datum_type() {
        DatumType::F32 => (
            ElemType::F32,
            to_le_bytes(view.as_slice::<f32>().map_err(fail)?, f32::to_le_bytes),
        ),
        DatumType::F64 => (
            ElemType::F64,
            to_le_bytes(view.as_slice::<f64>().map_err(fail)?, f64::to_le_bytes),
        ),
        DatumType::F16 => (
            ElemType::F16,
            to_le_bytes(
                view.as_slice::<half::f16>().map_err(fail)?,
                half::f16::to_le_bytes,
            ),
        ),
        DatumType::U8 => (ElemType::U8, view.as_slice::<u8>().map_err(fail)?.to_vec()),
        DatumType::Bool => (
            ElemType::U8,
            view.as_slice::<bool>()
                .map_err(fail)?
                .iter()
                .map(|b| u8::from(*b))
                .collect(),
        ),
        DatumType::I32 => (
            ElemType::I32,
            to_le_bytes(view.as_slice::<i32>().map_err(fail)?, i32::to_le_bytes),
        ),
        DatumType::TDim => {
            let dims = view.as_slice::<TDim>().map_err(fail)?;
            let values = dims
                .iter()
                .map(|d| {
                    d.to_i64().map_err(|_| {
                        NnError::runtime(format!(
                            "output {name}: symbolic dimension {d} is unresolved"
                        ))
                    })
                })
                .collect::<Result<Vec<i64>, NnError>>()?;
            (ElemType::I64, to_le_bytes(&values, i64::to_le_bytes))
        }
        DatumType::I64 => (
            ElemType::I64,
            to_le_bytes(view.as_slice::<i64>().map_err(fail)?, i64::to_le_bytes),
        ),
        other => {
            return Err(NnError::unsupported(format!(
                "output {name} has element type {other:?}, which wasi:nn cannot carry"
            )));
        }
    };
    Ok(HostTensor {
        name: name.to_string(),
        ty,
        dims: t.shape().to_vec(),
        data,
    })
}

impl EngineGraph for TractGraph {
    fn engine(&self) -> Engine {
        Engine::Tract
    }

    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn overlap(&self) -> &Overlap {
        &self.overlap
    }

    fn run(&self, inputs: Vec<HostTensor>) -> Result<Vec<HostTensor>, NnError> {
        let tensors = inputs
            .iter()
            .map(to_tensor)
            .collect::<Result<Vec<_>, _>>()?;
        let plan = self.plan_for(&tensors)?;
        let values: TVec<TValue> = tensors.into_iter().map(|t| t.into_tvalue()).collect();
        let _running = self.overlap.enter();
        let outputs = plan
            .run(values)
            .map_err(|e| NnError::runtime(format!("model {}: {}", self.name, one_line(&e))))?;
        outputs
            .iter()
            .zip(&self.outputs)
            .map(|(value, spec)| from_tensor(&spec.name, value))
            .collect()
    }
}
