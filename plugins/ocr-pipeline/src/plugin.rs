//! The component: configuration, model loading through `wasi:nn`, and the pipeline export.

use std::cell::RefCell;

use outpost_sdk::nn::{Context, Input, Model, TensorType};
use outpost_sdk::pipeline::{Guest, Message};
use outpost_sdk::{config, log};

use crate::pipeline::{Engine, Params, Stage, run};
use crate::rec::Charset;

/// What a plugin instance keeps between calls: the models, their contexts, the charset and the
/// configuration.
struct State {
    det: Loaded,
    rec: Loaded,
    cls: Option<Loaded>,
    charset: Charset,
    params: Params,
    topic: String,
}

struct Loaded {
    name: String,
    // Kept alive for as long as its context is.
    _model: Model,
    ctx: Context,
}

impl Loaded {
    fn load(name: &str, role: &str) -> Result<Loaded, String> {
        let model =
            Model::load(name).map_err(|e| format!("cannot load the {role} model '{name}': {e}"))?;
        let ctx = model
            .context()
            .map_err(|e| format!("cannot create a context for the {role} model '{name}': {e}"))?;
        Ok(Loaded {
            name: name.to_string(),
            _model: model,
            ctx,
        })
    }

    fn infer(&mut self, dims: &[usize], input: Vec<u8>) -> Result<(Vec<usize>, Vec<f32>), String> {
        let dims32: Vec<u32> = dims.iter().map(|d| *d as u32).collect();
        let outputs = self
            .ctx
            .compute(&[("x", Input::raw(TensorType::Fp32, &dims32, input))])
            .map_err(|e| format!("inference with model '{}' failed: {e}", self.name))?;
        let first = outputs
            .into_iter()
            .next()
            .ok_or_else(|| format!("model '{}' returned no output", self.name))?;
        let values = first
            .to_f32()
            .map_err(|e| format!("model '{}': {e}", self.name))?;
        let odims = first.dims.iter().map(|d| *d as usize).collect();
        Ok((odims, values))
    }
}

impl Engine for State {
    fn infer(
        &mut self,
        stage: Stage,
        dims: &[usize],
        input: Vec<u8>,
    ) -> Result<(Vec<usize>, Vec<f32>), String> {
        match stage {
            Stage::Det => self.det.infer(dims, input),
            Stage::Rec => self.rec.infer(dims, input),
            Stage::Cls => match self.cls.as_mut() {
                Some(cls) => cls.infer(dims, input),
                None => Err("no cls-model configured".into()),
            },
        }
    }
}

fn parse<T: std::str::FromStr>(key: &str, check: impl Fn(&T) -> bool) -> Result<Option<T>, String> {
    match config::get(key) {
        None => Ok(None),
        Some(raw) => match raw.trim().parse::<T>() {
            Ok(v) if check(&v) => Ok(Some(v)),
            _ => Err(format!("config '{key}': invalid value '{raw}'")),
        },
    }
}

fn params_from_config() -> Result<Params, String> {
    let mut p = Params::default();
    if let Some(v) = parse::<u32>("det-limit-side-len", |v| *v > 0)? {
        p.det.limit_side_len = v;
    }
    if let Some(v) = parse::<f32>("det-thresh", |v| (0.0..1.0).contains(v))? {
        p.det.thresh = v;
    }
    if let Some(v) = parse::<f64>("box-thresh", |v| (0.0..=1.0).contains(v))? {
        p.det.box_thresh = v;
    }
    if let Some(v) = parse::<f64>("unclip-ratio", |v| *v > 0.0 && v.is_finite())? {
        p.det.unclip_ratio = v;
    }
    if let Some(v) = parse::<usize>("rec-batch", |v| (1..=256).contains(v))? {
        p.rec_batch = v;
    }
    Ok(p)
}

fn load_state() -> Result<State, String> {
    let mut params = params_from_config()?;
    let keys_path = config::get_or("keys", "/models/ocr/keys.txt");
    let keys = std::fs::read(&keys_path)
        .map_err(|e| format!("cannot read the keys file '{keys_path}': {e}"))?;
    let keys =
        String::from_utf8(keys).map_err(|_| format!("the keys file '{keys_path}' is not UTF-8"))?;
    let charset = Charset::from_keys(&keys);
    if charset.classes() <= 2 {
        return Err(format!("the keys file '{keys_path}' is empty"));
    }
    let det = Loaded::load(&config::get_or("det-model", "ocr-det"), "detection")?;
    let rec = Loaded::load(&config::get_or("rec-model", "ocr-rec"), "recognition")?;
    let cls = match config::get("cls-model") {
        Some(name) if !name.trim().is_empty() => Some(Loaded::load(name.trim(), "direction")?),
        _ => None,
    };
    params.use_cls = cls.is_some();
    log::info(&format!(
        "ocr-pipeline ready: {} characters, direction classification {}",
        charset.classes() - 2,
        if params.use_cls { "on" } else { "off" }
    ));
    Ok(State {
        det,
        rec,
        cls,
        charset,
        params,
        topic: config::get_or("output-topic", "ocr/results"),
    })
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

struct Plugin;

impl Guest for Plugin {
    fn handle(_topic: String, payload: Vec<u8>) -> Result<Vec<Message>, String> {
        STATE.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(load_state()?);
            }
            let state = slot.as_mut().ok_or("state unavailable")?;
            let params = state.params.clone();
            let charset = state.charset.clone();
            let result = run(&payload, &params, &charset, state)?;
            log::debug(&format!(
                "ocr: {}x{}, {} lines, det {:.1} ms, cls {:.1} ms, rec {:.1} ms",
                result.width,
                result.height,
                result.lines.len(),
                result.timings.det,
                result.timings.cls,
                result.timings.rec
            ));
            Ok(vec![Message {
                topic: state.topic.clone(),
                payload: result.to_json().into_bytes(),
            }])
        })
    }
}

outpost_sdk::export_pipeline!(Plugin);
