//! The trust policy: which publisher keys are trusted, and for which plugins and repositories.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, UpdateError};
use crate::keys::PublicKey;

/// One trusted publisher, as written in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherSpec {
    /// A name for logs and the audit log (for example the ISV's name).
    pub name: String,
    /// The publisher's ECDSA P-256 public key, SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key: String,
    /// Plugin names this publisher may sign: exact names or globs (`*` any run of characters,
    /// `?` one character).
    pub plugins: Vec<String>,
    /// Repositories (`registry/repository`, no tag or digest) this publisher may sign: exact or
    /// globs, e.g. `registry.example.com/acme/*`.
    pub repositories: Vec<String>,
}

/// The policy file: a list of publishers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicySpec {
    /// Trusted publishers.
    pub publishers: Vec<PublisherSpec>,
}

/// A trusted publisher with its parsed key.
#[derive(Debug, Clone)]
pub struct Publisher {
    spec: PublisherSpec,
    key: PublicKey,
}

impl Publisher {
    /// The publisher's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The publisher's public key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// Whether this publisher may sign `plugin` published in `repository` (`registry/repo`).
    pub fn may_sign(&self, plugin: &str, repository: &str) -> bool {
        self.spec.plugins.iter().any(|p| glob_match(p, plugin))
            && self
                .spec
                .repositories
                .iter()
                .any(|p| glob_match(p, repository))
    }
}

/// A validated trust policy.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    publishers: Vec<Publisher>,
}

impl TrustPolicy {
    /// Validates a policy: at least one publisher, unique names, parseable keys, and non-empty
    /// plugin and repository lists.
    pub fn new(spec: TrustPolicySpec) -> Result<Self> {
        if spec.publishers.is_empty() {
            return Err(UpdateError::InvalidPolicy(
                "no publishers: nothing could ever be installed".into(),
            ));
        }
        let mut publishers = Vec::with_capacity(spec.publishers.len());
        for p in spec.publishers {
            if publishers.iter().any(|q: &Publisher| q.spec.name == p.name) {
                return Err(UpdateError::InvalidPolicy(format!(
                    "publisher `{}` is listed twice",
                    p.name
                )));
            }
            if p.plugins.is_empty() || p.repositories.is_empty() {
                return Err(UpdateError::InvalidPolicy(format!(
                    "publisher `{}` needs at least one plugin and one repository pattern (use \"*\" to allow all)",
                    p.name
                )));
            }
            let key = PublicKey::from_pem(&p.public_key).map_err(|reason| {
                UpdateError::InvalidPolicy(format!("publisher `{}`: {reason}", p.name))
            })?;
            publishers.push(Publisher { spec: p, key });
        }
        Ok(Self { publishers })
    }

    /// Reads a JSON policy file (see [`TrustPolicySpec`]).
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| UpdateError::io(path, e))?;
        let spec: TrustPolicySpec = serde_json::from_str(&text)
            .map_err(|e| UpdateError::InvalidPolicy(format!("{}: {e}", path.display())))?;
        Self::new(spec)
    }

    /// The trusted publishers.
    pub fn publishers(&self) -> &[Publisher] {
        &self.publishers
    }
}

/// Glob match over the whole string: `*` matches any run of characters (including `/`), `?`
/// exactly one; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, plugins: &[&str], repositories: &[&str]) -> PublisherSpec {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::keys::generate_keypair(dir.path()).unwrap();
        PublisherSpec {
            name: name.into(),
            public_key: std::fs::read_to_string(paths.public_key).unwrap(),
            plugins: plugins.iter().map(|s| s.to_string()).collect(),
            repositories: repositories.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_policy_without_publishers_or_with_duplicates_or_empty_allowances_is_invalid() {
        let empty = TrustPolicySpec { publishers: vec![] };
        assert!(matches!(
            TrustPolicy::new(empty),
            Err(UpdateError::InvalidPolicy(_))
        ));
        let dup = TrustPolicySpec {
            publishers: vec![spec("a", &["*"], &["*"]), spec("a", &["*"], &["*"])],
        };
        assert!(matches!(
            TrustPolicy::new(dup),
            Err(UpdateError::InvalidPolicy(_))
        ));
        let no_plugins = TrustPolicySpec {
            publishers: vec![spec("a", &[], &["*"])],
        };
        assert!(matches!(
            TrustPolicy::new(no_plugins),
            Err(UpdateError::InvalidPolicy(_))
        ));
        let mut bad_key = spec("a", &["*"], &["*"]);
        bad_key.public_key = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into();
        let bad_key = TrustPolicySpec {
            publishers: vec![bad_key],
        };
        assert!(matches!(
            TrustPolicy::new(bad_key),
            Err(UpdateError::InvalidPolicy(_))
        ));
    }

    #[test]
    fn a_publisher_may_sign_only_matching_plugins_in_matching_repositories() {
        let policy = TrustPolicy::new(TrustPolicySpec {
            publishers: vec![spec("acme", &["acme-*", "shared"], &["reg.example/acme/*"])],
        })
        .unwrap();
        let acme = &policy.publishers()[0];
        assert!(acme.may_sign("acme-filter", "reg.example/acme/filter"));
        assert!(acme.may_sign("shared", "reg.example/acme/x"));
        assert!(!acme.may_sign("core-fw", "reg.example/acme/filter"));
        assert!(!acme.may_sign("acme-filter", "reg.example/core/filter"));
    }

    #[test]
    fn globs_match_exact_names_prefixes_and_single_characters() {
        assert!(glob_match("acme-filter", "acme-filter"));
        assert!(!glob_match("acme-filter", "acme-filters"));
        assert!(glob_match("acme-*", "acme-filter"));
        assert!(glob_match("*", ""));
        assert!(glob_match(
            "registry.example/acme/*",
            "registry.example/acme/x/y"
        ));
        assert!(!glob_match(
            "registry.example/acme/*",
            "registry.example/evil/x"
        ));
        assert!(glob_match("v?", "v1"));
        assert!(!glob_match("v?", "v10"));
        assert!(glob_match("*-*-z", "a-b-c-z"));
    }
}
