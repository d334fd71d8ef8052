//! The customer-managed KEK provider: versioned AES-256 KEKs inside an HSM, used over PKCS#11.
//!
//! # Key layout in the token
//!
//! KEK version `N` of key id `K` is an AES-256 secret key object labelled `K/vN`, generated inside
//! the token with `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE = true`, `CKA_EXTRACTABLE = false`,
//! `CKA_WRAP = CKA_UNWRAP = true` and every other usage (encrypt, decrypt, sign, verify, derive)
//! off. The key value never leaves the token: the host only asks the token to wrap and unwrap.
//!
//! # Wrapping
//!
//! Data keys are wrapped with `CKM_AES_KEY_WRAP_PAD` (RFC 5649), so a header written through this
//! provider carries the same [`WrapAlgorithm::Aes256KwPad`] bytes as one written by the
//! [`DeviceKeyStore`](crate::DeviceKeyStore), and data can move between providers by rewrapping.
//!
//! * **wrap**: the data key is imported as a short-lived *session* object (`CKA_TOKEN = false`,
//!   extractable so that `C_WrapKey` accepts it), wrapped under the current KEK with `C_WrapKey`,
//!   and destroyed.
//! * **unwrap**: `C_UnwrapKey` under the named KEK version creates the data key as a session
//!   object with `CKA_SENSITIVE = false`; the host reads its `CKA_VALUE` (it needs the data key in
//!   memory to run AES-GCM over the object) and destroys the object at once. SoftHSM2 and most
//!   HSMs do not offer `C_Decrypt` with the key-wrap mechanisms, so this is the portable way to
//!   get a data key out while the KEK itself stays sensitive and non-extractable.
//!
//! # Disabling, expiry, deletion
//!
//! [`Pkcs11Provider::disable_version`] sets `CKA_WRAP = CKA_UNWRAP = false` on the version's
//! object, so the *token itself* refuses to use it (`CKR_KEY_FUNCTION_NOT_PERMITTED`); the
//! provider reports it as [`KeysError::KeyVersionDisabled`]. A customer can do the same with
//! their own HSM tooling. A version whose `CKA_END_DATE` is in the past (UTC) is refused with
//! [`KeysError::KeyVersionExpired`], and a version whose object was deleted from the token gives
//! [`KeysError::KeyVersionMissing`]. None of these ever falls back to anything: the data simply
//! stays unreadable until the key is restored.
//!
//! # Sessions and threads
//!
//! PKCS#11 sessions must not be used from two threads at once, so the provider keeps a small
//! pool of idle sessions: each operation takes one (opening and logging in a new one when the
//! pool is empty) and puts it back afterwards. A session that the token reports as closed,
//! logged out or removed is dropped and the operation is retried once on a fresh session, so an
//! HSM reconnect does not need a restart. Login state is per application in PKCS#11: two
//! providers on the same token in one process share it (the second does not re-check its PIN).
//!
//! Wraps and unwraps run concurrently; creating, changing or destroying a KEK object (rotate,
//! disable, enable, destroy) waits for them and runs alone, because SoftHSM2's file object store
//! fails operations that race a token-object change. A rotation blocks readers only for the
//! `C_GenerateKey` call.
//!
//! A module is loaded and `C_Initialize`d once per process (and never finalized), however many
//! providers use it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::header::validate_key_id;
use crate::{DATA_KEY_LEN, DataKey, KeyProvider, KeysError, WrapAlgorithm, WrappedKey};

/// Environment variable that overrides where [`locate_module`] looks for the PKCS#11 module.
pub const MODULE_ENV: &str = "OUTPOST_PKCS11_MODULE";

/// Where distributions install the SoftHSM2 module, tried in order by [`locate_module`].
pub const SOFTHSM2_LOCATIONS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// Most idle sessions kept per provider; more are opened under load and closed afterwards.
const MAX_IDLE_SESSIONS: usize = 8;

/// Finds a PKCS#11 module: the path in `OUTPOST_PKCS11_MODULE` if set, otherwise the first of
/// [`SOFTHSM2_LOCATIONS`] that exists.
pub fn locate_module() -> Result<PathBuf, KeysError> {
    if let Some(path) = std::env::var_os(MODULE_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(KeysError::Pkcs11ModuleUnavailable {
                module: path,
                reason: format!("{MODULE_ENV} names a file that does not exist"),
            })
        };
    }
    SOFTHSM2_LOCATIONS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| KeysError::Pkcs11ModuleUnavailable {
            module: PathBuf::from(SOFTHSM2_LOCATIONS[0]),
            reason: format!(
                "no PKCS#11 module found; set {MODULE_ENV} or install SoftHSM2 \
                 (Debian/Ubuntu: apt-get install softhsm2)"
            ),
        })
}

/// Reads a user PIN from a file: the whole file, less one trailing newline. The file must not be
/// readable by other users (mode `o-rwx`) and must not be empty.
pub fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, KeysError> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |reason: &str| KeysError::PinFile {
        path: path.to_owned(),
        reason: reason.into(),
    };
    let meta = std::fs::metadata(path)
        .map_err(|e| KeysError::io(format!("reading PIN file {}", path.display()), e))?;
    if meta.permissions().mode() & 0o007 != 0 {
        return Err(bad(
            "readable by other users; restrict it to mode 0600 or 0640",
        ));
    }
    let bytes = Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| KeysError::io(format!("reading PIN file {}", path.display()), e))?,
    );
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8"))?;
    let pin = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if pin.is_empty() {
        return Err(bad("empty"));
    }
    Ok(Zeroizing::new(pin.to_owned()))
}

/// How to reach the customer's key in an HSM.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (shared library) of the HSM.
    pub module: PathBuf,
    /// Label of the token holding the KEKs.
    pub token_label: String,
    /// The token's user PIN.
    pub user_pin: Zeroizing<String>,
    /// The key id: KEK versions are the token's AES keys labelled `<key_id>/v<N>`.
    pub key_id: String,
}

impl Pkcs11Config {
    /// A configuration with the PIN given by the caller.
    pub fn new(
        module: impl Into<PathBuf>,
        token_label: impl Into<String>,
        user_pin: impl Into<String>,
        key_id: impl Into<String>,
    ) -> Self {
        Pkcs11Config {
            module: module.into(),
            token_label: token_label.into(),
            user_pin: Zeroizing::new(user_pin.into()),
            key_id: key_id.into(),
        }
    }

    /// A configuration whose PIN is read from `pin_file` (see [`read_pin_file`]).
    pub fn with_pin_file(
        module: impl Into<PathBuf>,
        token_label: impl Into<String>,
        pin_file: &Path,
        key_id: impl Into<String>,
    ) -> Result<Self, KeysError> {
        let pin = read_pin_file(pin_file)?;
        Ok(Pkcs11Config {
            module: module.into(),
            token_label: token_label.into(),
            user_pin: pin,
            key_id: key_id.into(),
        })
    }
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("user_pin", &"<redacted>")
            .field("key_id", &self.key_id)
            .finish()
    }
}

/// Loads and initializes `path` once per process.
fn load_module(path: &Path) -> Result<Pkcs11, KeysError> {
    static MODULES: Mutex<BTreeMap<PathBuf, Pkcs11>> = Mutex::new(BTreeMap::new());
    let unavailable = |reason: String| KeysError::Pkcs11ModuleUnavailable {
        module: path.to_owned(),
        reason,
    };
    let key = path
        .canonicalize()
        .map_err(|e| unavailable(e.to_string()))?;
    let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(ctx) = modules.get(&key) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(&key).map_err(|e| unavailable(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(unavailable(format!("C_Initialize: {e}"))),
    }
    tracing::debug!(module = %key.display(), "loaded PKCS#11 module");
    modules.insert(key, ctx.clone());
    Ok(ctx)
}

/// A failure inside a pooled-session operation: already classified, or a raw PKCS#11 error
/// still to be mapped (and possibly retried on a fresh session).
enum Failure {
    Keys(KeysError),
    Ck(&'static str, CkError),
    /// The session lost its login (private objects became invisible); retried after logging in.
    LoggedOut,
}

impl From<KeysError> for Failure {
    fn from(e: KeysError) -> Self {
        Failure::Keys(e)
    }
}

fn ck(operation: &'static str) -> impl FnOnce(CkError) -> Failure {
    move |e| Failure::Ck(operation, e)
}

fn rv(e: &CkError) -> Option<RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

fn logged_in(session: &Session) -> Result<bool, CkError> {
    let state = session.get_session_info()?.session_state();
    Ok(matches!(state, SessionState::RwUser | SessionState::RoUser))
}

/// An empty search result is only believed while logged in: logged out, private objects are
/// simply invisible, which must not read as "key version missing".
fn found<T>(session: &Session, items: T, empty: bool) -> Result<T, Failure> {
    if empty && !logged_in(session).map_err(ck("C_GetSessionInfo"))? {
        return Err(Failure::LoggedOut);
    }
    Ok(items)
}

/// Errors after which a session is no good and a fresh one may succeed.
fn session_is_stale(e: &CkError) -> bool {
    matches!(
        rv(e),
        Some(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
        )
    )
}

/// Errors that mean the wrapped bytes do not unwrap under this KEK. SoftHSM2 answers a failed
/// RFC 5649 integrity check with `CKR_GENERAL_ERROR`, so that counts too (either way nothing is
/// unwrapped).
fn is_rejected_wrapping(e: &CkError) -> bool {
    matches!(
        rv(e),
        Some(
            RvError::WrappedKeyInvalid
                | RvError::WrappedKeyLenRange
                | RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::DataInvalid
                | RvError::DataLenRange
                | RvError::GeneralError
                | RvError::FunctionFailed
        )
    )
}

/// One logged-in token and its idle sessions.
struct Token {
    ctx: Pkcs11,
    slot: Slot,
    label: String,
    pin: AuthPin,
    idle: Mutex<Vec<Session>>,
    /// Held shared by wraps and unwraps, exclusively while a token object is created, changed or
    /// destroyed: SoftHSM2's file store fails operations that race a token-object change
    /// (`CKR_GENERAL_ERROR`), and rotation is rare enough that a real HSM loses nothing.
    changes: RwLock<()>,
}

impl Token {
    fn error(&self, operation: &str, e: CkError) -> KeysError {
        let token = self.label.clone();
        match rv(&e) {
            Some(RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange) => {
                KeysError::WrongPin { token }
            }
            Some(RvError::PinLocked) => KeysError::PinLocked { token },
            Some(
                RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::SlotIdInvalid
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::CryptokiNotInitialized,
            ) => KeysError::TokenUnavailable {
                token,
                reason: format!("{operation}: {e}"),
            },
            _ => KeysError::Hsm {
                token,
                operation: operation.to_owned(),
                reason: e.to_string(),
            },
        }
    }

    fn open_session(&self) -> Result<Session, KeysError> {
        self.ctx
            .open_rw_session(self.slot)
            .map_err(|e| self.error("C_OpenSession", e))
    }

    /// Logs the application in unless it already is (login state is shared by its sessions).
    fn log_in(&self, session: &Session) -> Result<(), CkError> {
        if logged_in(session)? {
            return Ok(());
        }
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Session>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `op` on a session of its own; retries once on a fresh session if the pooled one
    /// turned out to be stale.
    fn with_session<T>(&self, op: impl Fn(&Session) -> Result<T, Failure>) -> Result<T, KeysError> {
        let mut retried = false;
        loop {
            let pooled = self.idle().pop();
            let session = match pooled {
                Some(s) => s,
                None => self.open_session()?,
            };
            let result = match self.log_in(&session) {
                Ok(()) => op(&session),
                Err(e) => Err(Failure::Ck("C_Login", e)),
            };
            match result {
                Ok(v) => {
                    self.put_back(session);
                    return Ok(v);
                }
                Err(Failure::Ck(operation, e)) if session_is_stale(&e) => {
                    // Every idle session is likely as stale as this one.
                    self.idle().clear();
                    if retried {
                        return Err(self.error(operation, e));
                    }
                    tracing::warn!(token = %self.label, error = %e, "PKCS#11 session went stale; retrying on a new one");
                    retried = true;
                }
                Err(Failure::LoggedOut) => {
                    self.put_back(session);
                    if retried {
                        return Err(KeysError::TokenUnavailable {
                            token: self.label.clone(),
                            reason: "logged out of the token while using it".into(),
                        });
                    }
                    tracing::warn!(token = %self.label, "logged out of the PKCS#11 token; logging in again");
                    retried = true;
                }
                Err(Failure::Ck(operation, e)) => {
                    self.put_back(session);
                    return Err(self.error(operation, e));
                }
                Err(Failure::Keys(e)) => {
                    self.put_back(session);
                    return Err(e);
                }
            }
        }
    }

    /// [`Token::with_session`] for operations that only use token objects.
    fn using<T>(&self, op: impl Fn(&Session) -> Result<T, Failure>) -> Result<T, KeysError> {
        let _shared = self.changes.read().unwrap_or_else(PoisonError::into_inner);
        self.with_session(op)
    }

    /// [`Token::with_session`] for operations that create, change or destroy token objects.
    fn changing<T>(&self, op: impl Fn(&Session) -> Result<T, Failure>) -> Result<T, KeysError> {
        let _exclusive = self.changes.write().unwrap_or_else(PoisonError::into_inner);
        self.with_session(op)
    }

    fn put_back(&self, session: Session) {
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
        }
    }
}

/// A session object destroyed when dropped (the short-lived data-key objects).
struct Ephemeral<'s> {
    session: &'s Session,
    handle: ObjectHandle,
}

impl Drop for Ephemeral<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.session.destroy_object(self.handle) {
            tracing::warn!(error = %e, "could not destroy a data-key session object");
        }
    }
}

/// Whether a KEK version may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
enum VersionState {
    Usable,
    Disabled,
    Expired(String),
}

/// Today's date (UTC) as `YYYYMMDD`.
fn today() -> [u8; 8] {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = [0u8; 8];
    out.copy_from_slice(format!("{year:04}{month:02}{day:02}").as_bytes());
    out
}

/// Customer-managed KEKs in an HSM token, reached over PKCS#11. See the [module docs](self).
pub struct Pkcs11Provider {
    token: Token,
    module: PathBuf,
    key_id: String,
}

impl std::fmt::Debug for Pkcs11Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Provider")
            .field("module", &self.module)
            .field("token", &self.token.label)
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl Pkcs11Provider {
    /// Opens the key in the token; fails with [`KeysError::KeyVersionMissing`] (version 1) if
    /// the token holds no version of it.
    pub fn open(config: &Pkcs11Config) -> Result<Self, KeysError> {
        Self::open_inner(config, false)
    }

    /// Opens the key in the token, generating version 1 inside the token if it holds none.
    pub fn open_or_create(config: &Pkcs11Config) -> Result<Self, KeysError> {
        Self::open_inner(config, true)
    }

    fn open_inner(config: &Pkcs11Config, create: bool) -> Result<Self, KeysError> {
        validate_key_id(&config.key_id)?;
        let ctx = load_module(&config.module)?;
        let label = config.token_label.clone();
        let unavailable = |reason: String| KeysError::TokenUnavailable {
            token: label.clone(),
            reason,
        };
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| unavailable(format!("C_GetSlotList: {e}")))?;
        let mut seen = Vec::new();
        let mut found = None;
        for slot in slots {
            let Ok(info) = ctx.get_token_info(slot) else {
                continue;
            };
            let name = info.label().trim_end().to_owned();
            if name == config.token_label {
                found = Some((slot, info));
                break;
            }
            seen.push(name);
        }
        let Some((slot, info)) = found else {
            return Err(unavailable(format!(
                "no token with this label (tokens present: {seen:?})"
            )));
        };
        if info.user_pin_locked() {
            return Err(KeysError::PinLocked { token: label });
        }
        if !info.user_pin_initialized() {
            return Err(unavailable(
                "the token's user PIN is not initialized".into(),
            ));
        }
        let mechanisms = ctx
            .get_mechanism_list(slot)
            .map_err(|e| unavailable(format!("C_GetMechanismList: {e}")))?;
        for needed in [MechanismType::AES_KEY_WRAP_PAD, MechanismType::AES_KEY_GEN] {
            if !mechanisms.contains(&needed) {
                return Err(KeysError::Hsm {
                    token: label,
                    operation: "checking mechanisms".into(),
                    reason: format!("the token does not support {needed}"),
                });
            }
        }
        let provider = Pkcs11Provider {
            token: Token {
                ctx,
                slot,
                label: config.token_label.clone(),
                pin: AuthPin::from(config.user_pin.as_str()),
                idle: Mutex::new(Vec::new()),
                changes: RwLock::new(()),
            },
            module: config.module.clone(),
            key_id: config.key_id.clone(),
        };
        // Logs in, so a wrong PIN fails here rather than at the first read.
        let versions = provider.token.using(|s| provider.list(s))?;
        if versions.is_empty() {
            if !create {
                return Err(KeysError::KeyVersionMissing {
                    key_id: provider.key_id.clone(),
                    version: 1,
                });
            }
            provider.rotate()?;
        }
        provider.token.using(|s| provider.audit(s))?;
        Ok(provider)
    }

    /// The token label.
    pub fn token_label(&self) -> &str {
        &self.token.label
    }

    /// The object label of KEK `version`: `<key_id>/v<version>`.
    pub fn version_label(&self, version: u32) -> String {
        format!("{}/v{version}", self.key_id)
    }

    /// Every version in the token, usable or not, ascending.
    pub fn versions(&self) -> Result<Vec<u32>, KeysError> {
        self.token
            .with_session(|s| Ok(self.list(s)?.into_keys().collect()))
    }

    /// Generates KEK version N+1 inside the token and makes it current; older versions stay for
    /// unwrapping. Returns the new version.
    pub fn rotate(&self) -> Result<u32, KeysError> {
        // Exclusive, so two rotations cannot both pick the same next version.
        let version = self.token.changing(|s| {
            let next = self.list(s)?.keys().last().copied().unwrap_or(0) + 1;
            self.generate(s, next)?;
            Ok(next)
        })?;
        tracing::info!(key_id = %self.key_id, version, token = %self.token.label, "generated KEK version in the HSM");
        Ok(version)
    }

    /// Revokes `version` in the token (`CKA_WRAP = CKA_UNWRAP = false`): the token refuses to
    /// use it and objects wrapped under it no longer open until it is re-enabled.
    pub fn disable_version(&self, version: u32) -> Result<(), KeysError> {
        self.set_usable(version, false)?;
        tracing::warn!(key_id = %self.key_id, version, "KEK version disabled");
        Ok(())
    }

    /// Re-enables a version disabled with [`Pkcs11Provider::disable_version`].
    pub fn enable_version(&self, version: u32) -> Result<(), KeysError> {
        self.set_usable(version, true)?;
        tracing::info!(key_id = %self.key_id, version, "KEK version enabled");
        Ok(())
    }

    /// Destroys `version` in the token. Irreversible: every object still wrapped under it
    /// becomes unreadable for good (it reports [`KeysError::KeyVersionMissing`]).
    pub fn destroy_version(&self, version: u32) -> Result<(), KeysError> {
        self.token.changing(|s| {
            let objects = self.find(s, version)?;
            if objects.is_empty() {
                return Err(self.missing(version).into());
            }
            for o in objects {
                s.destroy_object(o).map_err(ck("C_DestroyObject"))?;
            }
            Ok(())
        })?;
        tracing::warn!(key_id = %self.key_id, version, "KEK version destroyed");
        Ok(())
    }

    fn missing(&self, version: u32) -> KeysError {
        KeysError::KeyVersionMissing {
            key_id: self.key_id.clone(),
            version,
        }
    }

    fn set_usable(&self, version: u32, usable: bool) -> Result<(), KeysError> {
        self.token.changing(|s| {
            let objects = self.find(s, version)?;
            if objects.is_empty() {
                return Err(self.missing(version).into());
            }
            for o in objects {
                s.update_attributes(o, &[Attribute::Wrap(usable), Attribute::Unwrap(usable)])
                    .map_err(ck("C_SetAttributeValue"))?;
            }
            Ok(())
        })
    }

    fn generate(&self, s: &Session, version: u32) -> Result<ObjectHandle, Failure> {
        let label = self.version_label(version);
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Modifiable(true),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::Label(label.clone().into_bytes()),
            Attribute::Id(label.into_bytes()),
        ];
        s.generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(ck("C_GenerateKey"))
    }

    /// Every version's objects (normally one each).
    fn list(&self, s: &Session) -> Result<BTreeMap<u32, Vec<ObjectHandle>>, Failure> {
        let prefix = format!("{}/v", self.key_id);
        let objects = s
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
            ])
            .map_err(ck("C_FindObjects"))?;
        let mut out: BTreeMap<u32, Vec<ObjectHandle>> = BTreeMap::new();
        for o in objects {
            let attrs = s
                .get_attributes(o, &[AttributeType::Label])
                .map_err(ck("C_GetAttributeValue"))?;
            let Some(Attribute::Label(label)) = attrs.first() else {
                continue;
            };
            let version = std::str::from_utf8(label)
                .ok()
                .and_then(|l| l.strip_prefix(&prefix))
                .filter(|n| !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(v) = version {
                out.entry(v).or_default().push(o);
            }
        }
        let empty = out.is_empty();
        found(s, out, empty)
    }

    fn find(&self, s: &Session, version: u32) -> Result<Vec<ObjectHandle>, Failure> {
        let objects = s
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Label(self.version_label(version).into_bytes()),
            ])
            .map_err(ck("C_FindObjects"))?;
        let empty = objects.is_empty();
        found(s, objects, empty)
    }

    fn state(&self, s: &Session, o: ObjectHandle) -> Result<VersionState, Failure> {
        let usage = s
            .get_attributes(o, &[AttributeType::Wrap, AttributeType::Unwrap])
            .map_err(ck("C_GetAttributeValue"))?;
        if usage
            .iter()
            .any(|a| matches!(a, Attribute::Wrap(false) | Attribute::Unwrap(false)))
        {
            return Ok(VersionState::Disabled);
        }
        // Read on its own so that a token that cannot report the date fails closed with a clear
        // error (SoftHSM2 2.6 cannot read back an end date set on a private object).
        let end = s
            .get_attributes(o, &[AttributeType::EndDate])
            .map_err(ck("reading the KEK's CKA_END_DATE"))?;
        for a in end {
            if let Attribute::EndDate(d) = a
                && !d.is_empty()
            {
                let mut ymd = [0u8; 8];
                ymd[..4].copy_from_slice(&d.year);
                ymd[4..6].copy_from_slice(&d.month);
                ymd[6..].copy_from_slice(&d.day);
                if ymd < today() {
                    let t = String::from_utf8_lossy(&ymd).into_owned();
                    let date = format!(
                        "{}-{}-{}",
                        t.get(..4).unwrap_or("????"),
                        t.get(4..6).unwrap_or("??"),
                        t.get(6..).unwrap_or("??")
                    );
                    return Ok(VersionState::Expired(date));
                }
            }
        }
        Ok(VersionState::Usable)
    }

    fn state_error(&self, version: u32, state: VersionState) -> KeysError {
        let key_id = self.key_id.clone();
        match state {
            VersionState::Usable | VersionState::Disabled => {
                KeysError::KeyVersionDisabled { key_id, version }
            }
            VersionState::Expired(end_date) => KeysError::KeyVersionExpired {
                key_id,
                version,
                end_date,
            },
        }
    }

    /// Warns about versions whose value could leave the token (imported or badly generated).
    fn audit(&self, s: &Session) -> Result<(), Failure> {
        for (version, objects) in self.list(s)? {
            for o in objects {
                let attrs = s
                    .get_attributes(o, &[AttributeType::Sensitive, AttributeType::Extractable])
                    .map_err(ck("C_GetAttributeValue"))?;
                let exposed = attrs.iter().any(|a| {
                    matches!(
                        a,
                        Attribute::Sensitive(false) | Attribute::Extractable(true)
                    )
                });
                if exposed {
                    tracing::warn!(key_id = %self.key_id, version, "KEK version is extractable or not sensitive: its value can leave the HSM");
                }
            }
        }
        Ok(())
    }

    /// The newest usable version and its object.
    fn current(&self, s: &Session) -> Result<(u32, ObjectHandle), Failure> {
        let versions = self.list(s)?;
        let mut newest_refusal = None;
        for (&version, objects) in versions.iter().rev() {
            for &o in objects {
                match self.state(s, o)? {
                    VersionState::Usable => return Ok((version, o)),
                    refused => {
                        newest_refusal.get_or_insert((version, refused));
                    }
                }
            }
        }
        Err(match newest_refusal {
            Some((version, state)) => self.state_error(version, state),
            None => self.missing(1),
        }
        .into())
    }

    fn wrap_in(&self, s: &Session, data_key: &DataKey) -> Result<WrappedKey, Failure> {
        let (version, kek) = self.current(s)?;
        let key = s
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Value(data_key.as_bytes().to_vec()),
            ])
            .map_err(ck("C_CreateObject"))?;
        let key = Ephemeral {
            session: s,
            handle: key,
        };
        let bytes = s
            .wrap_key(&Mechanism::AesKeyWrapPad, kek, key.handle)
            .map_err(ck("C_WrapKey"))?;
        Ok(WrappedKey {
            algorithm: WrapAlgorithm::Aes256KwPad,
            version,
            bytes,
        })
    }

    fn unwrap_in(&self, s: &Session, wrapped: &WrappedKey) -> Result<DataKey, Failure> {
        let version = wrapped.version;
        let objects = self.find(s, version)?;
        if objects.is_empty() {
            return Err(self.missing(version).into());
        }
        let rejected = || KeysError::WrappedKeyRejected {
            key_id: self.key_id.clone(),
            version,
        };
        let mut refusal = None;
        let mut tried = false;
        // Normally one object; two only if rotations raced across processes. KWP is
        // authenticated, so trying each is safe.
        for kek in objects {
            let state = self.state(s, kek)?;
            if state != VersionState::Usable {
                refusal.get_or_insert(state);
                continue;
            }
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ];
            let key = match s.unwrap_key(&Mechanism::AesKeyWrapPad, kek, &wrapped.bytes, &template)
            {
                Ok(h) => Ephemeral {
                    session: s,
                    handle: h,
                },
                Err(e) if rv(&e) == Some(RvError::KeyFunctionNotPermitted) => {
                    refusal.get_or_insert(VersionState::Disabled);
                    continue;
                }
                Err(e) if is_rejected_wrapping(&e) => {
                    tried = true;
                    continue;
                }
                Err(e) => return Err(Failure::Ck("C_UnwrapKey", e)),
            };
            let attrs = s
                .get_attributes(key.handle, &[AttributeType::Value])
                .map_err(ck("C_GetAttributeValue"))?;
            let Some(Attribute::Value(value)) = attrs.into_iter().next() else {
                return Err(KeysError::Hsm {
                    token: self.token.label.clone(),
                    operation: "reading the unwrapped data key".into(),
                    reason: "the token did not release the value".into(),
                }
                .into());
            };
            let value = Zeroizing::new(value);
            let bytes: [u8; DATA_KEY_LEN] = value[..].try_into().map_err(|_| rejected())?;
            return Ok(DataKey::from_bytes(bytes));
        }
        Err(match (tried, refusal) {
            (false, Some(state)) => self.state_error(version, state),
            _ => rejected(),
        }
        .into())
    }
}

impl KeyProvider for Pkcs11Provider {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn current_version(&self) -> Result<u32, KeysError> {
        self.token.using(|s| Ok(self.current(s)?.0))
    }

    fn wrap(&self, data_key: &DataKey) -> Result<WrappedKey, KeysError> {
        self.token.using(|s| self.wrap_in(s, data_key))
    }

    fn unwrap(&self, key_id: &str, wrapped: &WrappedKey) -> Result<DataKey, KeysError> {
        crate::provider::check_unwrap_request(&self.key_id, key_id, wrapped)?;
        let result = self.token.using(|s| self.unwrap_in(s, wrapped));
        if let Err(
            e @ (KeysError::KeyVersionMissing { .. }
            | KeysError::KeyVersionDisabled { .. }
            | KeysError::KeyVersionExpired { .. }),
        ) = &result
        {
            tracing::error!(key_id = %self.key_id, version = wrapped.version, error = %e, "customer key unavailable: data wrapped under it cannot be read");
        }
        result
    }
}
