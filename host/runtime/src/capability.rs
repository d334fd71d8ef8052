//! Deny by default: which grant each importable interface needs, and the load-time check that
//! refuses a plugin whose imports exceed its grants.
//!
//! A component declares every interface it imports; the host reads them before instantiating
//! anything. An import that needs a grant the manifest did not give is refused with the
//! interface and the missing grant named; an import the host does not provide at all is refused
//! too. What a plugin *can* import is then narrowed further at run time by the grant's contents
//! (which directories, which addresses, which topics).

use outpost_manifest::{Grants, PluginKind};

/// Why a plugin's imports were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// The plugin imports an interface that needs a grant it does not have.
    #[error(
        "plugin `{plugin}` imports `{interface}` but is not granted {grant} (add `{hint}` to its manifest entry)"
    )]
    NotGranted {
        /// Plugin name.
        plugin: String,
        /// The imported interface.
        interface: String,
        /// The grant that would allow it, in words.
        grant: &'static str,
        /// The manifest key that grants it.
        hint: &'static str,
    },
    /// The plugin imports something the host does not provide to plugins of its kind.
    #[error(
        "plugin `{plugin}` imports `{interface}`, which this host does not provide to {kind} plugins"
    )]
    Unsupported {
        /// Plugin name.
        plugin: String,
        /// The imported interface.
        interface: String,
        /// The plugin's kind.
        kind: PluginKind,
    },
}

/// What an import needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Always available: it reaches nothing outside the plugin (clocks, random, streams, logging,
    /// its own config).
    Ambient,
    /// Needs a grant: (description, manifest key).
    Grant(&'static str, &'static str),
    /// Not provided.
    Unsupported,
}

/// How strictly WASI imports are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportPolicy {
    /// Deployed plugins: every import that reaches outside needs its grant at load time.
    Strict,
    /// `outpost job run`, which must behave like `wasmtime run`: WASI filesystem and socket
    /// imports link, and reach only what the command line granted (nothing by default).
    Command,
}

/// Splits `ns:pkg/iface@ver` into (`ns:pkg`, `iface`, version).
pub fn split_interface(name: &str) -> Option<(&str, &str, Option<&str>)> {
    let (path, version) = match name.split_once('@') {
        Some((p, v)) => (p, Some(v)),
        None => (name, None),
    };
    let (package, iface) = path.split_once('/')?;
    package.contains(':').then_some((package, iface, version))
}

/// The requirement for importing `interface` into a plugin of `kind`.
pub fn requirement(interface: &str, kind: PluginKind) -> Requirement {
    let Some((package, iface, version)) = split_interface(interface) else {
        return Requirement::Unsupported;
    };
    let wasi_02 = version.is_none_or(|v| v.starts_with("0.2."));
    match package {
        "outpost:plugin" if version.is_none_or(|v| v.starts_with("0.1.")) => match iface {
            // Their own config, logging, and interfaces that only define types.
            "log" | "config" | "pipeline-types" | "tiering-types" | "packet-types" => {
                Requirement::Ambient
            }
            "bus" => Requirement::Grant("a bus topic", "grants.bus"),
            "kv" => Requirement::Grant("a kv namespace", "grants.kv"),
            "shares" => Requirement::Grant("a share", "grants.shares"),
            "tables" if kind == PluginKind::NetworkFunction => {
                Requirement::Grant("a table", "grants.tables")
            }
            // Each function checks its own grant (a port, the control socket) when called.
            "nf-io" if kind == PluginKind::NetworkFunction => Requirement::Ambient,
            _ => Requirement::Unsupported,
        },
        "wasi:io" | "wasi:clocks" | "wasi:random" if wasi_02 => Requirement::Ambient,
        "wasi:cli" if wasi_02 => match iface {
            "environment" | "exit" | "stdin" | "stdout" | "stderr" | "terminal-input"
            | "terminal-output" | "terminal-stdin" | "terminal-stdout" | "terminal-stderr" => {
                Requirement::Ambient
            }
            _ => Requirement::Unsupported,
        },
        "wasi:nn" if version == Some("0.2.0-rc-2024-10-28") && kind == PluginKind::Pipeline => {
            match iface {
                "tensor" | "errors" | "inference" | "graph" => {
                    Requirement::Grant("a model", "grants.models")
                }
                _ => Requirement::Unsupported,
            }
        }
        "wasi:filesystem" if wasi_02 => Requirement::Grant("a directory", "grants.dirs"),
        "wasi:sockets" if wasi_02 => Requirement::Grant("network access", "grants.net"),
        "wasi:http" if wasi_02 && kind == PluginKind::Http => match iface {
            "types" => Requirement::Ambient,
            "outgoing-handler" => Requirement::Grant("network access", "grants.net"),
            _ => Requirement::Unsupported,
        },
        _ => Requirement::Unsupported,
    }
}

fn granted(key: &str, grants: &Grants) -> bool {
    match key {
        "grants.bus" => !grants.bus.is_empty(),
        "grants.kv" => grants.kv.is_some(),
        "grants.shares" => !grants.shares.is_empty(),
        "grants.dirs" => !grants.dirs.is_empty(),
        "grants.net" => !grants.net.is_empty(),
        "grants.models" => !grants.models.is_empty() || grants.nn_load.is_some(),
        "grants.tables" => !grants.nf.tables.is_empty(),
        _ => false,
    }
}

/// Checks every import of a plugin against its grants.
pub fn check_imports<'a>(
    plugin: &str,
    kind: PluginKind,
    imports: impl IntoIterator<Item = &'a str>,
    grants: &Grants,
    policy: ImportPolicy,
) -> Result<(), CapabilityError> {
    for interface in imports {
        match requirement(interface, kind) {
            Requirement::Ambient => {}
            Requirement::Grant(_, "grants.dirs" | "grants.net")
                if policy == ImportPolicy::Command => {}
            Requirement::Grant(grant, hint) => {
                if !granted(hint, grants) {
                    return Err(CapabilityError::NotGranted {
                        plugin: plugin.to_string(),
                        interface: interface.to_string(),
                        grant,
                        hint,
                    });
                }
            }
            Requirement::Unsupported => {
                return Err(CapabilityError::Unsupported {
                    plugin: plugin.to_string(),
                    interface: interface.to_string(),
                    kind,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_manifest::{KvGrant, TopicPattern};

    #[test]
    fn interface_names_split_into_package_interface_and_version() {
        assert_eq!(
            split_interface("wasi:filesystem/types@0.2.6"),
            Some(("wasi:filesystem", "types", Some("0.2.6")))
        );
        assert_eq!(
            split_interface("outpost:plugin/kv"),
            Some(("outpost:plugin", "kv", None))
        );
        assert_eq!(split_interface("handle"), None);
    }

    #[test]
    fn ambient_interfaces_need_no_grant() {
        let imports = [
            "wasi:io/streams@0.2.6",
            "wasi:cli/stdout@0.2.0",
            "outpost:plugin/log@0.1.0",
        ];
        check_imports(
            "p",
            PluginKind::Pipeline,
            imports,
            &Grants::default(),
            ImportPolicy::Strict,
        )
        .unwrap();
    }

    #[test]
    fn kv_without_a_kv_grant_is_refused_naming_both() {
        let err = check_imports(
            "p",
            PluginKind::Pipeline,
            ["outpost:plugin/kv@0.1.0"],
            &Grants::default(),
            ImportPolicy::Strict,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugin `p` imports `outpost:plugin/kv@0.1.0` but is not granted a kv namespace (add `grants.kv` to its manifest entry)"
        );
        let grants = Grants {
            kv: Some(KvGrant {
                namespace: "p".into(),
                quota_bytes: 1,
            }),
            ..Grants::default()
        };
        check_imports(
            "p",
            PluginKind::Pipeline,
            ["outpost:plugin/kv@0.1.0"],
            &grants,
            ImportPolicy::Strict,
        )
        .unwrap();
    }

    #[test]
    fn sockets_and_files_need_grants_except_for_command_line_jobs() {
        for iface in ["wasi:sockets/tcp@0.2.0", "wasi:filesystem/preopens@0.2.6"] {
            assert!(matches!(
                check_imports(
                    "p",
                    PluginKind::Job,
                    [iface],
                    &Grants::default(),
                    ImportPolicy::Strict
                ),
                Err(CapabilityError::NotGranted { .. })
            ));
            check_imports(
                "p",
                PluginKind::Job,
                [iface],
                &Grants::default(),
                ImportPolicy::Command,
            )
            .unwrap();
        }
    }

    #[test]
    fn bus_grant_allows_the_bus_import() {
        let mut grants = Grants::default();
        grants.bus.publish.push(TopicPattern::parse("t").unwrap());
        check_imports(
            "p",
            PluginKind::Pipeline,
            ["outpost:plugin/bus@0.1.0"],
            &grants,
            ImportPolicy::Strict,
        )
        .unwrap();
    }

    #[test]
    fn wasi_nn_needs_a_model_grant_and_is_only_for_pipelines() {
        let graph = "wasi:nn/graph@0.2.0-rc-2024-10-28";
        assert!(matches!(
            check_imports(
                "p",
                PluginKind::Pipeline,
                [graph],
                &Grants::default(),
                ImportPolicy::Strict
            ),
            Err(CapabilityError::NotGranted {
                hint: "grants.models",
                ..
            })
        ));
        let grants = Grants {
            models: vec!["det".into()],
            ..Grants::default()
        };
        assert!(
            check_imports(
                "p",
                PluginKind::Pipeline,
                [graph],
                &grants,
                ImportPolicy::Strict
            )
            .is_ok()
        );
        assert!(matches!(
            check_imports(
                "p",
                PluginKind::Http,
                [graph],
                &grants,
                ImportPolicy::Strict
            ),
            Err(CapabilityError::Unsupported { .. })
        ));
        assert!(matches!(
            check_imports(
                "p",
                PluginKind::Pipeline,
                ["wasi:nn/graph@0.3.0"],
                &grants,
                ImportPolicy::Strict
            ),
            Err(CapabilityError::Unsupported { .. })
        ));
    }

    #[test]
    fn unknown_interfaces_and_versions_are_unsupported() {
        for iface in [
            "acme:evil/backdoor@1.0.0",
            "wasi:cli/run-as-root@0.2.0",
            "outpost:plugin/kv@9.0.0",
            "wasi:io/streams@0.3.0",
        ] {
            assert!(
                matches!(
                    check_imports(
                        "p",
                        PluginKind::Pipeline,
                        [iface],
                        &Grants::default(),
                        ImportPolicy::Command
                    ),
                    Err(CapabilityError::Unsupported { .. })
                ),
                "{iface}"
            );
        }
        assert!(matches!(
            check_imports(
                "p",
                PluginKind::Pipeline,
                ["wasi:http/types@0.2.0"],
                &Grants::default(),
                ImportPolicy::Strict
            ),
            Err(CapabilityError::Unsupported { .. })
        ));
    }
}
