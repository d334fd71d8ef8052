//! What a wasm file is, what it imports and exports, and which plugin kind it fits.

use outpost_manifest::PluginKind;
use serde::Serialize;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;
use wasmtime::{Engine, Module};

/// A component or a core module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// A component-model component.
    Component,
    /// A core WebAssembly module (WASI preview1).
    CoreModule,
}

/// What `outpost plugin inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// Component or core module.
    pub artifact: ArtifactKind,
    /// The plugin kind its exports fit, if any.
    pub world: Option<PluginKind>,
    /// Imported interfaces (or `module::name` for core modules), sorted.
    pub imports: Vec<String>,
    /// Exported interfaces and functions, sorted.
    pub exports: Vec<String>,
    /// Size in bytes.
    pub size: usize,
    /// Content digest, `sha256:<hex>`.
    pub digest: String,
}

/// Whether the bytes look like a component (as opposed to a core module).
pub fn is_component(bytes: &[u8]) -> bool {
    wasmparser::Parser::is_component(bytes)
}

/// The imports of a compiled component.
pub fn component_imports(engine: &Engine, component: &Component) -> Vec<String> {
    let mut names: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    names.sort();
    names
}

/// The exports of a compiled component; functions inside exported instances appear as
/// `instance#function`.
pub fn component_exports(engine: &Engine, component: &Component) -> Vec<String> {
    let mut names = Vec::new();
    for (name, item) in component.component_type().exports(engine) {
        match item.ty {
            ComponentItem::ComponentInstance(instance) => {
                names.push(name.to_string());
                for (func, _) in instance.exports(engine) {
                    names.push(format!("{name}#{func}"));
                }
            }
            _ => names.push(name.to_string()),
        }
    }
    names.sort();
    names
}

/// Which plugin kind a component's exports fit.
pub fn world_of(exports: &[String]) -> Option<PluginKind> {
    let has = |prefix: &str| {
        exports
            .iter()
            .any(|e| e == prefix || e.starts_with(&format!("{prefix}@")))
    };
    if has("wasi:cli/run") {
        Some(PluginKind::Job)
    } else if has("wasi:http/incoming-handler") {
        Some(PluginKind::Http)
    } else if has("handle") {
        Some(PluginKind::Pipeline)
    } else if has("decide") {
        Some(PluginKind::TieringPolicy)
    } else if has("process") && has("control") && has("tick") {
        Some(PluginKind::NetworkFunction)
    } else {
        None
    }
}

/// Inspects already-compiled artifacts.
pub fn inspect_component(engine: &Engine, component: &Component, bytes: &[u8]) -> Inspection {
    let exports = component_exports(engine, component);
    Inspection {
        artifact: ArtifactKind::Component,
        world: world_of(&exports),
        imports: component_imports(engine, component),
        exports,
        size: bytes.len(),
        digest: crate::cache::digest(bytes),
    }
}

/// Inspects a compiled core module.
pub fn inspect_module(module: &Module, bytes: &[u8]) -> Inspection {
    let mut imports: Vec<String> = module
        .imports()
        .map(|i| format!("{}::{}", i.module(), i.name()))
        .collect();
    imports.sort();
    let mut exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
    exports.sort();
    let world = exports
        .iter()
        .any(|e| e == "_start")
        .then_some(PluginKind::Job);
    Inspection {
        artifact: ArtifactKind::CoreModule,
        world,
        imports,
        exports,
        size: bytes.len(),
        digest: crate::cache::digest(bytes),
    }
}
