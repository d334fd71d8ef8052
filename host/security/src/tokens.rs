//! API tokens for the management API. A token is `opt_` plus 43 characters of base64url (32
//! random bytes); the store keeps only its SHA-256, so a leaked `tokens.json` grants nothing.
//!
//! ```
//! use outpost_security::{Access, Role, TokenStore, bearer_token};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut store = TokenStore::open(&dir.path().join("tokens.json")).unwrap();
//! let token = store.add("grafana", Role::Viewer).unwrap();
//! let header = format!("Bearer {token}");
//! let who = store.verify(bearer_token(&header).unwrap()).unwrap();
//! assert_eq!(who.name, "grafana");
//! assert!(who.role.may(Access::Read) && !who.role.may(Access::Write));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::SecurityError;
use crate::files;

/// The token store's file name inside the data directory.
pub const TOKENS_FILE: &str = "tokens.json";
/// The file the bootstrap admin token is written to inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Every token starts with this.
const TOKEN_PREFIX: &str = "opt_";
/// Presented tokens longer than this are refused without hashing.
const MAX_PRESENTED_LEN: usize = 256;
/// The name of the bootstrap token.
const ADMIN_NAME: &str = "admin";
/// Format version of `tokens.json`.
const FILE_VERSION: u32 = 1;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only access (GET).
    Viewer,
    /// Everything.
    Operator,
    /// Only posting to the ingest endpoint.
    Ingest,
}

/// The kind of access a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Reading state (GET).
    Read,
    /// Changing state (PUT, POST, DELETE outside ingest).
    Write,
    /// Posting to the ingest endpoint.
    Ingest,
}

impl Role {
    /// Whether this role grants `access`.
    pub fn may(&self, access: Access) -> bool {
        match self {
            Role::Operator => true,
            Role::Viewer => access == Access::Read,
            Role::Ingest => access == Access::Ingest,
        }
    }

    /// The role's lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Ingest => "ingest",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = SecurityError;

    fn from_str(s: &str) -> Result<Role, SecurityError> {
        [Role::Viewer, Role::Operator, Role::Ingest]
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| SecurityError::InvalidRole(s.to_string()))
    }
}

/// Who a verified token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's name.
    pub name: String,
    /// The token's role.
    pub role: Role,
}

/// A stored token as listed (never the full hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The token's name.
    pub name: String,
    /// The token's role.
    pub role: Role,
    /// When it was created, seconds since the Unix epoch.
    pub created_unix: u64,
    /// The first 8 hex digits of its SHA-256, to tell tokens apart.
    pub sha256_prefix: String,
}

/// One entry of `tokens.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    role: Role,
    sha256: String,
    created_unix: u64,
}

/// The layout of `tokens.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    version: u32,
    tokens: Vec<Entry>,
}

/// The API tokens, backed by a JSON file (0600) holding only their hashes.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    entries: Vec<Entry>,
    digests: Vec<[u8; 32]>,
}

impl TokenStore {
    /// Opens the store at `path`; a missing file is an empty store.
    pub fn open(path: &Path) -> Result<TokenStore, SecurityError> {
        let mut store = TokenStore {
            path: path.to_path_buf(),
            entries: Vec::new(),
            digests: Vec::new(),
        };
        if !files::exists(path)? {
            return Ok(store);
        }
        let text = files::read_text(path)?;
        files::warn_if_readable_by_others(path);
        let file: TokenFile = serde_json::from_str(&text)
            .map_err(|e| SecurityError::corrupt(path, format!("not a token file: {e}")))?;
        if file.version != FILE_VERSION {
            return Err(SecurityError::corrupt(
                path,
                format!(
                    "unsupported version {} (expected {FILE_VERSION})",
                    file.version
                ),
            ));
        }
        for entry in file.tokens {
            let bad = |reason: String| SecurityError::corrupt(path, reason);
            check_name(&entry.name)
                .map_err(|_| bad(format!("invalid token name `{}`", entry.name)))?;
            if store.entries.iter().any(|e| e.name == entry.name) {
                return Err(bad(format!("token `{}` appears twice", entry.name)));
            }
            let digest = parse_digest(&entry.sha256).ok_or_else(|| {
                bad(format!(
                    "token `{}`: sha256 must be 64 hex digits",
                    entry.name
                ))
            })?;
            store.digests.push(digest);
            store.entries.push(entry);
        }
        Ok(store)
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Creates a token `name` with `role`, saves the store and returns the token (shown once).
    pub fn add(&mut self, name: &str, role: Role) -> Result<String, SecurityError> {
        self.check_new(name)?;
        let token = new_token()?;
        self.insert(name, role, &token)?;
        Ok(token)
    }

    /// Removes the token `name` and saves the store.
    pub fn remove(&mut self, name: &str) -> Result<(), SecurityError> {
        let index = self
            .entries
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| SecurityError::NoSuchToken(name.to_string()))?;
        let entry = self.entries.remove(index);
        let digest = self.digests.remove(index);
        if let Err(e) = self.save() {
            self.entries.insert(index, entry);
            self.digests.insert(index, digest);
            return Err(e);
        }
        tracing::info!(name, path = %self.path.display(), "removed API token");
        Ok(())
    }

    /// The stored tokens, in creation order.
    pub fn list(&self) -> Vec<TokenInfo> {
        self.entries
            .iter()
            .map(|e| TokenInfo {
                name: e.name.clone(),
                role: e.role,
                created_unix: e.created_unix,
                sha256_prefix: e.sha256[..8].to_string(),
            })
            .collect()
    }

    /// Who `presented` belongs to, or `None`; compares digests in constant time.
    pub fn verify(&self, presented: &str) -> Option<Identity> {
        if presented.is_empty() || presented.len() > MAX_PRESENTED_LEN {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Look at every entry whatever matches, and pick the match without branching on it.
        let mut found = Choice::from(0);
        let mut index = 0u32;
        for (i, stored) in self.digests.iter().enumerate() {
            let hit = stored.ct_eq(&digest);
            index = u32::conditional_select(&index, &(i as u32), hit);
            found |= hit;
        }
        if !bool::from(found) {
            return None;
        }
        let entry = &self.entries[index as usize];
        Some(Identity {
            name: entry.name.clone(),
            role: entry.role,
        })
    }

    fn check_new(&self, name: &str) -> Result<(), SecurityError> {
        check_name(name)?;
        if self.entries.iter().any(|e| e.name == name) {
            return Err(SecurityError::DuplicateToken(name.to_string()));
        }
        Ok(())
    }

    fn insert(&mut self, name: &str, role: Role, token: &str) -> Result<(), SecurityError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.entries.push(Entry {
            name: name.to_string(),
            role,
            sha256: hex::encode(digest),
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        self.digests.push(digest);
        if let Err(e) = self.save() {
            self.entries.pop();
            self.digests.pop();
            return Err(e);
        }
        tracing::info!(name, %role, path = %self.path.display(), "created API token");
        Ok(())
    }

    fn save(&self) -> Result<(), SecurityError> {
        let file = TokenFile {
            version: FILE_VERSION,
            tokens: self.entries.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&file)
            .map_err(|e| SecurityError::corrupt(&self.path, format!("serializing: {e}")))?;
        json.push(b'\n');
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            files::create_private_dir(parent)?;
        }
        files::write_atomic(&self.path, &json, true)
    }
}

/// Creates an `admin` operator token if `data_dir/tokens.json` holds no tokens, writes it to
/// `data_dir/admin.token` (0600) and returns it; returns `None` when tokens already exist.
pub fn ensure_admin(data_dir: &Path) -> Result<Option<String>, SecurityError> {
    let mut store = TokenStore::open(&data_dir.join(TOKENS_FILE))?;
    if !store.is_empty() {
        return Ok(None);
    }
    store.check_new(ADMIN_NAME)?;
    let token = new_token()?;
    // The plaintext goes to disk first: if saving the store then fails, the next start simply
    // creates a new admin token; the other order could lose the only operator token.
    files::create_private_dir(data_dir)?;
    let token_path = data_dir.join(ADMIN_TOKEN_FILE);
    files::write_atomic(&token_path, format!("{token}\n").as_bytes(), true)?;
    store.insert(ADMIN_NAME, Role::Operator, &token)?;
    tracing::info!(path = %token_path.display(), "created the bootstrap admin token");
    Ok(Some(token))
}

/// The token in an `Authorization` header value of scheme `Bearer` (any case), if any.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let value = header_value.trim();
    let (scheme, rest) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    if token.is_empty() || token.contains(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    Some(token)
}

fn check_name(name: &str) -> Result<(), SecurityError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SecurityError::InvalidTokenName(name.to_string()))
    }
}

fn new_token() -> Result<String, SecurityError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| SecurityError::Random(e.to_string()))?;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Ok(format!("{TOKEN_PREFIX}{encoded}"))
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text, &mut digest).ok()?;
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_documented_shape() {
        let token = new_token().unwrap();
        assert_eq!(token.len(), 4 + 43);
        assert!(token.starts_with("opt_"));
        assert!(
            token[4..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(token, new_token().unwrap());
    }

    #[test]
    fn names_are_checked() {
        for good in ["a", "admin", "ci-runner_2", &"x".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Admin", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(
                matches!(check_name(bad), Err(SecurityError::InvalidTokenName(n)) if n == bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_matching_entry_is_found_among_many() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TokenStore::open(&dir.path().join("t.json")).unwrap();
        let tokens: Vec<String> = (0..5)
            .map(|i| store.add(&format!("t{i}"), Role::Viewer).unwrap())
            .collect();
        for (i, token) in tokens.iter().enumerate() {
            assert_eq!(store.verify(token).unwrap().name, format!("t{i}"));
        }
    }
}
