//! Element types, model signatures, and the checks every input passes before an engine sees it.
//!
//! Engines get only tensors whose names, element types, ranks, fixed dimensions and byte lengths
//! match the model's signature, so a bad tensor from a plugin is an `invalid-argument` error
//! naming what was wrong, never a panic or an engine crash.

use std::fmt;

use wasmtime_wasi_nn::wit::TensorType;

use crate::error::NnError;

/// The element types of `wasi:nn` tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ElemType {
    /// IEEE 754 half precision.
    F16,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision.
    F64,
    /// bfloat16.
    Bf16,
    /// Unsigned byte.
    U8,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
}

impl ElemType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElemType::U8 => 1,
            ElemType::F16 | ElemType::Bf16 => 2,
            ElemType::F32 | ElemType::I32 => 4,
            ElemType::F64 | ElemType::I64 => 8,
        }
    }

    /// The `wasi:nn` tensor type.
    pub fn to_wit(self) -> TensorType {
        match self {
            ElemType::F16 => TensorType::Fp16,
            ElemType::F32 => TensorType::Fp32,
            ElemType::F64 => TensorType::Fp64,
            ElemType::Bf16 => TensorType::Bf16,
            ElemType::U8 => TensorType::U8,
            ElemType::I32 => TensorType::I32,
            ElemType::I64 => TensorType::I64,
        }
    }

    /// From the `wasi:nn` tensor type.
    pub fn from_wit(ty: TensorType) -> ElemType {
        match ty {
            TensorType::Fp16 => ElemType::F16,
            TensorType::Fp32 => ElemType::F32,
            TensorType::Fp64 => ElemType::F64,
            TensorType::Bf16 => ElemType::Bf16,
            TensorType::U8 => ElemType::U8,
            TensorType::I32 => ElemType::I32,
            TensorType::I64 => ElemType::I64,
        }
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ElemType::F16 => "f16",
            ElemType::F32 => "f32",
            ElemType::F64 => "f64",
            ElemType::Bf16 => "bf16",
            ElemType::U8 => "u8",
            ElemType::I32 => "i32",
            ElemType::I64 => "i64",
        })
    }
}

/// One input or output of a model as the model declares it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IoSpec {
    /// The name in the model.
    pub name: String,
    /// Element type, when it is one `wasi:nn` can carry.
    pub ty: Option<ElemType>,
    /// The engine's name for the type (for types `wasi:nn` cannot carry).
    pub engine_type: String,
    /// Dimensions; `None` where the model leaves one open.
    pub dims: Vec<Option<u64>>,
}

impl IoSpec {
    /// `[1, 3, ?, ?]`-style text for errors and status.
    pub fn shape_text(&self) -> String {
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|d| d.map_or_else(|| "?".to_string(), |d| d.to_string()))
            .collect();
        format!("[{}]", dims.join(", "))
    }
}

/// A tensor crossing the host boundary: element type, dimensions and little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Input or output name.
    pub name: String,
    /// Element type.
    pub ty: ElemType,
    /// Dimensions.
    pub dims: Vec<usize>,
    /// Little-endian element bytes, C order.
    pub data: Vec<u8>,
}

impl HostTensor {
    /// Number of elements the dimensions describe, or `None` on overflow.
    pub fn element_count(dims: &[usize]) -> Option<usize> {
        dims.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d))
    }

    /// Builds a tensor from `wasmtime-wasi-nn`'s type, checking that the bytes fit the shape.
    pub fn from_wasi(
        name: String,
        tensor: wasmtime_wasi_nn::Tensor,
    ) -> Result<HostTensor, NnError> {
        let ty = ElemType::from_wit(tensor.ty);
        let dims: Vec<usize> = tensor.dimensions.iter().map(|d| *d as usize).collect();
        let t = HostTensor {
            name,
            ty,
            dims,
            data: tensor.data,
        };
        t.check_length()?;
        Ok(t)
    }

    /// Converts to `wasmtime-wasi-nn`'s type.
    pub fn into_wasi(self) -> Result<wasmtime_wasi_nn::Tensor, NnError> {
        let dimensions = self
            .dims
            .iter()
            .map(|d| {
                u32::try_from(*d).map_err(|_| {
                    NnError::runtime(format!(
                        "output {} has a dimension ({d}) larger than wasi:nn can carry",
                        self.name
                    ))
                })
            })
            .collect::<Result<Vec<u32>, NnError>>()?;
        Ok(wasmtime_wasi_nn::Tensor::new(
            dimensions,
            self.ty.to_wit(),
            self.data,
        ))
    }

    /// Checks that the data holds exactly the elements the dimensions describe.
    pub fn check_length(&self) -> Result<(), NnError> {
        let expected = Self::element_count(&self.dims)
            .and_then(|n| n.checked_mul(self.ty.size()))
            .ok_or_else(|| {
                NnError::invalid(format!(
                    "tensor {}: dimensions {:?} overflow",
                    self.name, self.dims
                ))
            })?;
        if expected != self.data.len() {
            return Err(NnError::invalid(format!(
                "tensor {}: {} dimensions {:?} need {expected} bytes, got {}",
                self.name,
                self.ty,
                self.dims,
                self.data.len()
            )));
        }
        Ok(())
    }
}

/// Matches the plugin's named inputs to the model's inputs and checks each against its
/// declaration. Returns the inputs in the model's order. A name may also be the input's
/// position (`"0"`, `"1"`, ...), for plugins written against engines without names.
pub fn bind_inputs(
    model: &str,
    specs: &[IoSpec],
    inputs: Vec<HostTensor>,
) -> Result<Vec<HostTensor>, NnError> {
    let mut slots: Vec<Option<HostTensor>> = vec![None; specs.len()];
    for mut input in inputs {
        let index = specs
            .iter()
            .position(|s| s.name == input.name)
            .or_else(|| {
                input
                    .name
                    .parse::<usize>()
                    .ok()
                    .filter(|i| *i < specs.len())
            })
            .ok_or_else(|| {
                let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                NnError::invalid(format!(
                    "model {model} has no input named `{}` (inputs: {})",
                    input.name,
                    names.join(", ")
                ))
            })?;
        let spec = &specs[index];
        if slots[index].is_some() {
            return Err(NnError::invalid(format!(
                "model {model}: input {} given twice",
                spec.name
            )));
        }
        input.name = spec.name.clone();
        check_input(model, spec, &input)?;
        slots[index] = Some(input);
    }
    slots
        .into_iter()
        .zip(specs)
        .map(|(slot, spec)| {
            slot.ok_or_else(|| {
                NnError::invalid(format!(
                    "model {model}: input {} ({} {}) is missing",
                    spec.name,
                    spec.ty
                        .map_or_else(|| spec.engine_type.clone(), |t| t.to_string()),
                    spec.shape_text()
                ))
            })
        })
        .collect()
}

fn check_input(model: &str, spec: &IoSpec, input: &HostTensor) -> Result<(), NnError> {
    match spec.ty {
        Some(ty) if ty == input.ty => {}
        Some(ty) => {
            return Err(NnError::invalid(format!(
                "model {model}: input {} is {ty}, got {}",
                spec.name, input.ty
            )));
        }
        None => {
            return Err(NnError::unsupported(format!(
                "model {model}: input {} has type {}, which wasi:nn cannot carry",
                spec.name, spec.engine_type
            )));
        }
    }
    if spec.dims.len() != input.dims.len() {
        return Err(NnError::invalid(format!(
            "model {model}: input {} has shape {}, got {:?} (rank {} instead of {})",
            spec.name,
            spec.shape_text(),
            input.dims,
            input.dims.len(),
            spec.dims.len()
        )));
    }
    for (axis, (want, got)) in spec.dims.iter().zip(&input.dims).enumerate() {
        if let Some(want) = want
            && *want != *got as u64
        {
            return Err(NnError::invalid(format!(
                "model {model}: input {} has shape {}, got {:?} (axis {axis} must be {want})",
                spec.name,
                spec.shape_text(),
                input.dims
            )));
        }
    }
    input.check_length()
}

/// Reads little-endian elements of a fixed-size type.
pub(crate) fn le_elements<const N: usize, T>(data: &[u8], convert: fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N)
        .map(|c| {
            let mut bytes = [0u8; N];
            bytes.copy_from_slice(c);
            convert(bytes)
        })
        .collect()
}

/// Writes elements as little-endian bytes.
pub(crate) fn to_le_bytes<T: Copy, const N: usize>(
    values: &[T],
    convert: fn(T) -> [u8; N],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * N);
    for v in values {
        out.extend_from_slice(&convert(*v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, ty: ElemType, dims: &[Option<u64>]) -> IoSpec {
        IoSpec {
            name: name.into(),
            ty: Some(ty),
            engine_type: ty.to_string(),
            dims: dims.to_vec(),
        }
    }

    fn tensor(name: &str, ty: ElemType, dims: &[usize]) -> HostTensor {
        let n: usize = dims.iter().product();
        HostTensor {
            name: name.into(),
            ty,
            dims: dims.to_vec(),
            data: vec![0; n * ty.size()],
        }
    }

    #[test]
    fn inputs_are_bound_by_name_or_position_in_the_models_order() {
        let specs = [
            spec("x", ElemType::F32, &[Some(1), None]),
            spec("sr", ElemType::I64, &[]),
        ];
        let bound = bind_inputs(
            "m",
            &specs,
            vec![
                tensor("1", ElemType::I64, &[]),
                tensor("x", ElemType::F32, &[1, 7]),
            ],
        )
        .unwrap();
        assert_eq!(bound[0].name, "x");
        assert_eq!(bound[0].dims, vec![1, 7]);
        assert_eq!(bound[1].name, "sr");
    }

    #[test]
    fn wrong_types_ranks_dims_and_lengths_are_invalid_arguments_naming_the_input() {
        let specs = [spec("x", ElemType::F32, &[Some(1), Some(3)])];
        let cases = [
            (
                tensor("x", ElemType::I64, &[1, 3]),
                "input x is f32, got i64",
            ),
            (tensor("x", ElemType::F32, &[3]), "rank 1 instead of 2"),
            (tensor("x", ElemType::F32, &[1, 4]), "axis 1 must be 3"),
            (tensor("y", ElemType::F32, &[1, 3]), "no input named `y`"),
        ];
        for (input, expected) in cases {
            let err = bind_inputs("m", &specs, vec![input]).unwrap_err();
            assert_eq!(err.code, crate::error::Code::InvalidArgument);
            assert!(
                err.message.contains(expected),
                "{} lacks {expected}",
                err.message
            );
        }
        let mut short = tensor("x", ElemType::F32, &[1, 3]);
        short.data.pop();
        let err = bind_inputs("m", &specs, vec![short]).unwrap_err();
        assert!(
            err.message.contains("need 12 bytes, got 11"),
            "{}",
            err.message
        );
        let err = bind_inputs("m", &specs, vec![]).unwrap_err();
        assert!(
            err.message.contains("input x (f32 [1, 3]) is missing"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_shape_whose_element_count_overflows_is_refused_not_allocated() {
        let t = HostTensor {
            name: "x".into(),
            ty: ElemType::F64,
            dims: vec![usize::MAX, 2],
            data: vec![],
        };
        assert!(t.check_length().unwrap_err().message.contains("overflow"));
    }

    #[test]
    fn every_element_type_has_its_size_and_round_trips_through_wit() {
        for (ty, size) in [
            (ElemType::F16, 2),
            (ElemType::F32, 4),
            (ElemType::F64, 8),
            (ElemType::Bf16, 2),
            (ElemType::U8, 1),
            (ElemType::I32, 4),
            (ElemType::I64, 8),
        ] {
            assert_eq!(ty.size(), size);
            assert_eq!(ElemType::from_wit(ty.to_wit()), ty);
        }
    }
}
