//! The local administrator password of the web UI: a person at the box logs in with it when they
//! have no API token at hand.
//!
//! On first start the host creates a random password, keeps only its Argon2id hash in
//! `ui-password.json` and writes the plaintext to `ui-initial-password` (owner-only) so `outpost
//! up` can show it once more. The first login with it must change it; the change removes the
//! plaintext file. Nothing else ever stores the password.

use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

use crate::SecurityError;
use crate::files;

/// The hashed password, in the data directory.
pub const UI_PASSWORD_FILE: &str = "ui-password.json";
/// The first-start password in plaintext, until it is changed.
pub const UI_INITIAL_PASSWORD_FILE: &str = "ui-initial-password";
/// The user name of the local administrator.
pub const UI_ADMIN_USER: &str = "admin";
/// The shortest password a change accepts.
pub const MIN_PASSWORD_LEN: usize = 12;
/// The longest password accepted (hashing cost is bounded).
pub const MAX_PASSWORD_LEN: usize = 256;

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    /// PHC string of the Argon2id hash.
    hash: String,
    /// Whether the next login must change the password.
    must_change: bool,
}

/// The outcome of a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// Wrong password.
    Wrong,
    /// Right password; `must_change` says the session may only change it.
    Right {
        /// The password is the first-start one and must be changed.
        must_change: bool,
    },
}

/// The administrator password store of one data directory.
#[derive(Debug, Clone)]
pub struct UiPassword {
    dir: PathBuf,
}

impl UiPassword {
    /// The store under `data_dir`, creating a first-start password when there is none. Returns
    /// the store and, when this call created it, the new password.
    pub fn ensure(data_dir: &Path) -> Result<(UiPassword, Option<String>), SecurityError> {
        let store = UiPassword {
            dir: data_dir.to_path_buf(),
        };
        if files::exists(&store.path())? {
            store.load()?;
            return Ok((store, None));
        }
        files::create_private_dir(data_dir)?;
        let password = new_password()?;
        // Plaintext first: if writing the hash then fails, the next start makes a new one.
        files::write_atomic(
            &data_dir.join(UI_INITIAL_PASSWORD_FILE),
            format!("{password}\n").as_bytes(),
            true,
        )?;
        store.save(&Stored {
            hash: hash(&password)?,
            must_change: true,
        })?;
        tracing::info!(path = %store.path().display(), "created the web UI's first-login password");
        Ok((store, Some(password)))
    }

    /// The first-start password while it has not been changed.
    pub fn initial_password(data_dir: &Path) -> Option<String> {
        let text = std::fs::read_to_string(data_dir.join(UI_INITIAL_PASSWORD_FILE)).ok()?;
        Some(text.trim().to_string()).filter(|p| !p.is_empty())
    }

    fn path(&self) -> PathBuf {
        self.dir.join(UI_PASSWORD_FILE)
    }

    fn load(&self) -> Result<Stored, SecurityError> {
        let path = self.path();
        let text = files::read_text(&path)?;
        let stored: Stored = serde_json::from_str(&text).map_err(|e| SecurityError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        PasswordHash::new(&stored.hash).map_err(|e| SecurityError::Corrupt {
            path,
            reason: format!("password hash: {e}"),
        })?;
        Ok(stored)
    }

    fn save(&self, stored: &Stored) -> Result<(), SecurityError> {
        let text = serde_json::to_vec_pretty(stored).map_err(|e| SecurityError::Corrupt {
            path: self.path(),
            reason: e.to_string(),
        })?;
        files::write_atomic(&self.path(), &text, true)
    }

    /// Checks `password`. A store that cannot be read refuses every password.
    pub fn check(&self, password: &str) -> Result<PasswordCheck, SecurityError> {
        let stored = self.load()?;
        if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
            return Ok(PasswordCheck::Wrong);
        }
        let parsed = PasswordHash::new(&stored.hash).map_err(|e| SecurityError::Corrupt {
            path: self.path(),
            reason: format!("password hash: {e}"),
        })?;
        Ok(
            match Argon2::default().verify_password(password.as_bytes(), &parsed) {
                Ok(()) => PasswordCheck::Right {
                    must_change: stored.must_change,
                },
                Err(_) => PasswordCheck::Wrong,
            },
        )
    }

    /// Replaces the password after checking the current one. The new one must be at least
    /// [`MIN_PASSWORD_LEN`] characters and differ from the current one.
    pub fn change(&self, current: &str, new: &str) -> Result<(), PasswordChangeError> {
        if self.check(current)? == PasswordCheck::Wrong {
            return Err(PasswordChangeError::WrongCurrent);
        }
        let len = new.chars().count();
        if len < MIN_PASSWORD_LEN {
            return Err(PasswordChangeError::TooShort(MIN_PASSWORD_LEN));
        }
        if new.len() > MAX_PASSWORD_LEN {
            return Err(PasswordChangeError::TooLong(MAX_PASSWORD_LEN));
        }
        if new == current {
            return Err(PasswordChangeError::Unchanged);
        }
        self.save(&Stored {
            hash: hash(new)?,
            must_change: false,
        })?;
        let initial = self.dir.join(UI_INITIAL_PASSWORD_FILE);
        if let Err(e) = std::fs::remove_file(&initial)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %initial.display(), error = %e, "cannot remove the first-login password file");
        }
        tracing::info!("web UI administrator password changed");
        Ok(())
    }
}

/// Why a password change was refused.
#[derive(Debug, thiserror::Error)]
pub enum PasswordChangeError {
    /// The current password given is wrong.
    #[error("the current password is wrong")]
    WrongCurrent,
    /// The new password is too short.
    #[error("the new password must have at least {0} characters")]
    TooShort(usize),
    /// The new password is too long.
    #[error("the new password must have at most {0} bytes")]
    TooLong(usize),
    /// The new password equals the current one.
    #[error("the new password must differ from the current one")]
    Unchanged,
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] SecurityError),
}

fn hash(password: &str) -> Result<String, SecurityError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| SecurityError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| SecurityError::Random(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| SecurityError::Generate {
            what: "password hash",
            reason: e.to_string(),
        })
}

/// Four groups of five letters and digits without look-alikes: about 100 bits, easy to type.
fn new_password() -> Result<String, SecurityError> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| SecurityError::Random(e.to_string()))?;
    let mut out = String::with_capacity(23);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 5 == 0 {
            out.push('-');
        }
        // 256 % 31 leaves a bias under 1 %: irrelevant for a password of this length.
        out.push(ALPHABET[*b as usize % ALPHABET.len()] as char);
    }
    Ok(out)
}

/// A random session or CSRF token (32 bytes, URL-safe base64).
pub fn random_secret() -> Result<String, SecurityError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| SecurityError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_start_password_works_must_be_changed_and_is_gone_after_the_change() {
        let dir = tempfile::tempdir().unwrap();
        let (store, created) = UiPassword::ensure(dir.path()).unwrap();
        let first = created.unwrap();
        assert_eq!(
            UiPassword::initial_password(dir.path()).as_deref(),
            Some(first.as_str())
        );
        assert_eq!(
            store.check(&first).unwrap(),
            PasswordCheck::Right { must_change: true }
        );
        assert_eq!(store.check("nope").unwrap(), PasswordCheck::Wrong);
        // The hash file never holds the password.
        let stored = std::fs::read_to_string(dir.path().join(UI_PASSWORD_FILE)).unwrap();
        assert!(!stored.contains(&first) && stored.contains("argon2id"));

        assert!(matches!(
            store.change("wrong", "a much longer password"),
            Err(PasswordChangeError::WrongCurrent)
        ));
        assert!(matches!(
            store.change(&first, "short"),
            Err(PasswordChangeError::TooShort(_))
        ));
        assert!(matches!(
            store.change(&first, &first),
            Err(PasswordChangeError::Unchanged)
        ));
        store.change(&first, "correct horse battery").unwrap();
        assert_eq!(store.check(&first).unwrap(), PasswordCheck::Wrong);
        assert_eq!(
            store.check("correct horse battery").unwrap(),
            PasswordCheck::Right { must_change: false }
        );
        assert!(UiPassword::initial_password(dir.path()).is_none());

        // A second start keeps the changed password and creates nothing.
        let (again, created) = UiPassword::ensure(dir.path()).unwrap();
        assert!(created.is_none());
        assert_eq!(
            again.check("correct horse battery").unwrap(),
            PasswordCheck::Right { must_change: false }
        );
    }

    #[test]
    fn a_corrupt_password_file_is_an_error_naming_it_and_refuses_logins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(UI_PASSWORD_FILE), "{not json").unwrap();
        let err = UiPassword::ensure(dir.path()).unwrap_err().to_string();
        assert!(err.contains(UI_PASSWORD_FILE), "{err}");
        let store = UiPassword {
            dir: dir.path().to_path_buf(),
        };
        assert!(store.check("anything").is_err());
    }
}
