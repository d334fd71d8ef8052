//! The ONNX Runtime engine: the library is loaded at run time (`ort` with `load-dynamic`), once
//! per process, and every model gets a pool of sessions so computes on one graph run in parallel
//! (an `ort` session runs one inference at a time).

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorElementType;
use ort::value::{DynValue, Tensor, ValueType};

use crate::error::{NnError, one_line};
use crate::stats::Overlap;
use crate::tensor::{ElemType, HostTensor, IoSpec, le_elements, to_le_bytes};
use crate::{Engine, EngineGraph, Placement};

/// ONNX Runtime, once loaded.
pub struct OrtRuntime {
    env: ort::environment::Environment,
    /// The library file it was loaded from.
    pub library: PathBuf,
    /// ONNX Runtime's build description.
    pub build_info: String,
}

static RUNTIME: OnceLock<Result<OrtRuntime, String>> = OnceLock::new();
static REQUESTED: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Where the ONNX Runtime library comes from: the manifest's `[host.nn] onnxruntime`, else
/// `ORT_DYLIB_PATH`.
pub fn library_path(configured: Option<&Path>) -> Option<PathBuf> {
    configured.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("ORT_DYLIB_PATH")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// Loads ONNX Runtime from `library` (once per process; later calls return the first outcome).
/// A missing file, a library of the wrong kind or version is an error, never a panic.
pub fn init(library: &Path) -> Result<&'static OrtRuntime, String> {
    {
        let mut requested = REQUESTED.lock().unwrap_or_else(|e| e.into_inner());
        match requested.as_ref() {
            Some(first) if first != library => {
                tracing::warn!(
                    first = %first.display(),
                    asked = %library.display(),
                    "ONNX Runtime is loaded once per process; keeping the first library"
                );
            }
            Some(_) => {}
            None => *requested = Some(library.to_path_buf()),
        }
    }
    RUNTIME
        .get_or_init(|| load(library))
        .as_ref()
        .map_err(Clone::clone)
}

/// The runtime, if it has been loaded successfully.
pub fn runtime() -> Option<&'static OrtRuntime> {
    RUNTIME.get().and_then(|r| r.as_ref().ok())
}

fn load(library: &Path) -> Result<OrtRuntime, String> {
    if !library.is_file() {
        return Err(format!("{} does not exist", library.display()));
    }
    let builder = ort::init_from(library).map_err(|e| one_line(&e))?;
    // `ort` asserts on a library that hands out no API table; keep such a failure an error.
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        builder.with_name("outpost").with_telemetry(false).build()
    }))
    .map_err(|_| format!("{} is not a usable ONNX Runtime library", library.display()))?;
    let env = built.map_err(|e| one_line(&e))?;
    let build_info = ort::info().to_string();
    tracing::info!(library = %library.display(), %build_info, "ONNX Runtime loaded");
    Ok(OrtRuntime {
        env,
        library: library.to_path_buf(),
        build_info,
    })
}

/// Whether this build can use CUDA, and if not, why.
pub fn cuda_support() -> Result<(), String> {
    #[cfg(feature = "cuda")]
    {
        use ort::ep::ExecutionProvider;
        match ort::ep::CUDA::is_available() {
            Ok(true) => Ok(()),
            Ok(false) => Err(
                "the ONNX Runtime library has no CUDA execution provider (use the \
                              onnxruntime-gpu wheel's library)"
                    .into(),
            ),
            Err(e) => Err(one_line(&e)),
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err("this host was built without CUDA support (cargo feature `cuda`)".into())
    }
}

struct Pool {
    idle: Vec<Session>,
    total: usize,
}

/// A model on ONNX Runtime: the bytes, the session settings and a pool of sessions.
pub(crate) struct OrtGraph {
    name: String,
    bytes: std::sync::Arc<[u8]>,
    threads: Option<u32>,
    cuda: bool,
    max_sessions: usize,
    pool: Mutex<Pool>,
    returned: Condvar,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    overlap: Overlap,
}

impl OrtGraph {
    /// Builds the first session (which checks the model) and reads the signature. With
    /// `gpu`, tries the CUDA execution provider and falls back to CPU, saying why.
    pub(crate) fn load(
        runtime: &'static OrtRuntime,
        name: &str,
        bytes: std::sync::Arc<[u8]>,
        threads: Option<u32>,
        gpu: bool,
        max_sessions: usize,
    ) -> Result<(OrtGraph, Placement), String> {
        let mut placement = Placement::cpu();
        let mut cuda = false;
        if gpu {
            match cuda_support().and_then(|()| session(runtime, &bytes, threads, true)) {
                Ok(first) => {
                    cuda = true;
                    placement = Placement::gpu();
                    return Ok((
                        Self::with_first(name, bytes, threads, cuda, max_sessions, first),
                        placement,
                    ));
                }
                Err(why) => {
                    tracing::warn!(model = name, reason = %why, "GPU requested; running on CPU");
                    placement.fallback = Some(why);
                }
            }
        }
        let first = session(runtime, &bytes, threads, cuda)?;
        Ok((
            Self::with_first(name, bytes, threads, cuda, max_sessions, first),
            placement,
        ))
    }

    fn with_first(
        name: &str,
        bytes: std::sync::Arc<[u8]>,
        threads: Option<u32>,
        cuda: bool,
        max_sessions: usize,
        first: Session,
    ) -> OrtGraph {
        let inputs = first
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect();
        let outputs = first
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect();
        OrtGraph {
            name: name.to_string(),
            bytes,
            threads,
            cuda,
            max_sessions: max_sessions.max(1),
            pool: Mutex::new(Pool {
                idle: vec![first],
                total: 1,
            }),
            returned: Condvar::new(),
            inputs,
            outputs,
            overlap: Overlap::default(),
        }
    }

    /// Takes an idle session, makes a new one while under the cap, or waits for one.
    fn checkout(&self) -> Result<Session, NnError> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(s) = pool.idle.pop() {
                return Ok(s);
            }
            if pool.total < self.max_sessions {
                pool.total += 1;
                drop(pool);
                let runtime = runtime().ok_or_else(|| NnError::runtime("ONNX Runtime is gone"))?;
                return session(runtime, &self.bytes, self.threads, self.cuda).map_err(|e| {
                    let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
                    pool.total -= 1;
                    self.returned.notify_one();
                    NnError::runtime(format!("model {}: new session: {e}", self.name))
                });
            }
            pool = self.returned.wait(pool).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn checkin(&self, session: Session) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.idle.push(session);
        self.returned.notify_one();
    }
}

fn session(
    runtime: &OrtRuntime,
    bytes: &[u8],
    threads: Option<u32>,
    cuda: bool,
) -> Result<Session, String> {
    let err = |e: &dyn std::fmt::Display| one_line(e);
    let mut builder = Session::builder(&runtime.env)
        .map_err(|e| err(&e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| err(&e))?;
    if let Some(n) = threads {
        builder = builder
            .with_intra_threads(n as usize)
            .map_err(|e| err(&e))?
            .with_inter_threads(1)
            .map_err(|e| err(&e))?;
    }
    #[cfg(feature = "cuda")]
    if cuda {
        builder = builder
            .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
            .map_err(|e| err(&e))?;
    }
    #[cfg(not(feature = "cuda"))]
    let _ = cuda;
    builder.commit_from_memory(bytes).map_err(|e| err(&e))
}

fn elem(ty: TensorElementType) -> Option<ElemType> {
    Some(match ty {
        TensorElementType::Float16 => ElemType::F16,
        TensorElementType::Float32 => ElemType::F32,
        TensorElementType::Float64 => ElemType::F64,
        TensorElementType::Bfloat16 => ElemType::Bf16,
        TensorElementType::Uint8 | TensorElementType::Bool => ElemType::U8,
        TensorElementType::Int32 => ElemType::I32,
        TensorElementType::Int64 => ElemType::I64,
        _ => return None,
    })
}

fn spec(name: &str, dtype: &ValueType) -> IoSpec {
    match dtype {
        ValueType::Tensor { ty, shape, .. } => IoSpec {
            name: name.to_string(),
            // A bool input cannot be fed from u8 bytes without a conversion we do not do.
            ty: elem(*ty).filter(|_| *ty != TensorElementType::Bool),
            engine_type: format!("{ty:?}"),
            dims: shape.iter().map(|d| u64::try_from(*d).ok()).collect(),
        },
        other => IoSpec {
            name: name.to_string(),
            ty: None,
            engine_type: format!("{other:?}"),
            dims: Vec::new(),
        },
    }
}

fn to_value(t: HostTensor) -> Result<DynValue, NnError> {
    let shape: Vec<i64> = t.dims.iter().map(|d| *d as i64).collect();
    let fail = |e: ort::Error| NnError::runtime(format!("input {}: {}", t.name, one_line(&e)));
    let value = match t.ty {
        ElemType::F32 => Tensor::from_array((shape, le_elements(&t.data, f32::from_le_bytes)))
            .map_err(fail)?
            .into_dyn(),
        ElemType::F64 => Tensor::from_array((shape, le_elements(&t.data, f64::from_le_bytes)))
            .map_err(fail)?
            .into_dyn(),
        ElemType::F16 => {
            Tensor::from_array((shape, le_elements(&t.data, half::f16::from_le_bytes)))
                .map_err(fail)?
                .into_dyn()
        }
        ElemType::Bf16 => {
            Tensor::from_array((shape, le_elements(&t.data, half::bf16::from_le_bytes)))
                .map_err(fail)?
                .into_dyn()
        }
        ElemType::U8 => Tensor::from_array((shape, t.data.clone()))
            .map_err(fail)?
            .into_dyn(),
        ElemType::I32 => Tensor::from_array((shape, le_elements(&t.data, i32::from_le_bytes)))
            .map_err(fail)?
            .into_dyn(),
        ElemType::I64 => Tensor::from_array((shape, le_elements(&t.data, i64::from_le_bytes)))
            .map_err(fail)?
            .into_dyn(),
    };
    Ok(value)
}

fn from_value(name: &str, value: &DynValue) -> Result<HostTensor, NnError> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(NnError::unsupported(format!(
            "output {name} is not a tensor ({:?})",
            value.dtype()
        )));
    };
    let fail = |e: ort::Error| NnError::runtime(format!("output {name}: {}", one_line(&e)));
    macro_rules! extract {
        ($t:ty, $ety:expr, $conv:expr) => {{
            let (shape, data) = value.try_extract_tensor::<$t>().map_err(fail)?;
            (
                shape.iter().map(|d| *d as usize).collect::<Vec<usize>>(),
                $ety,
                $conv(data),
            )
        }};
    }
    let (dims, ty, data) = match ty {
        TensorElementType::Float32 => extract!(f32, ElemType::F32, |d: &[f32]| to_le_bytes(
            d,
            f32::to_le_bytes
        )),
        TensorElementType::Float64 => extract!(f64, ElemType::F64, |d: &[f64]| to_le_bytes(
            d,
            f64::to_le_bytes
        )),
        TensorElementType::Float16 => {
            extract!(half::f16, ElemType::F16, |d: &[half::f16]| to_le_bytes(
                d,
                half::f16::to_le_bytes
            ))
        }
        TensorElementType::Bfloat16 => extract!(
            half::bf16,
            ElemType::Bf16,
            |d: &[half::bf16]| to_le_bytes(d, half::bf16::to_le_bytes)
        ),
        TensorElementType::Uint8 => extract!(u8, ElemType::U8, |d: &[u8]| d.to_vec()),
        TensorElementType::Bool => extract!(bool, ElemType::U8, |d: &[bool]| d
            .iter()
            .map(|b| u8::from(*b))
            .collect::<Vec<u8>>()),
        TensorElementType::Int32 => extract!(i32, ElemType::I32, |d: &[i32]| to_le_bytes(
            d,
            i32::to_le_bytes
        )),
        TensorElementType::Int64 => extract!(i64, ElemType::I64, |d: &[i64]| to_le_bytes(
            d,
            i64::to_le_bytes
        )),
        other => {
            return Err(NnError::unsupported(format!(
                "output {name} has element type {other:?}, which wasi:nn cannot carry"
            )));
        }
    };
    Ok(HostTensor {
        name: name.to_string(),
        ty,
        dims,
        data,
    })
}

impl EngineGraph for OrtGraph {
    fn engine(&self) -> Engine {
        Engine::OnnxRuntime
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
        let named: Vec<(String, DynValue)> = inputs
            .into_iter()
            .map(|t| Ok((t.name.clone(), to_value(t)?)))
            .collect::<Result<_, NnError>>()?;
        let mut session = self.checkout()?;
        let running = self.overlap.enter();
        let result = (|| {
            let mut outputs = session
                .run(named)
                .map_err(|e| NnError::runtime(format!("model {}: {}", self.name, one_line(&e))))?;
            self.outputs
                .iter()
                .map(|spec| {
                    let value = outputs.remove(spec.name.as_str()).ok_or_else(|| {
                        NnError::runtime(format!(
                            "model {}: output {} missing",
                            self.name, spec.name
                        ))
                    })?;
                    from_value(&spec.name, &value)
                })
                .collect::<Result<Vec<_>, NnError>>()
        })();
        drop(running);
        self.checkin(session);
        result
    }
}
