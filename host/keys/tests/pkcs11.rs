//! The PKCS#11 provider against a real SoftHSM2 token.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, when the module is initialized, and changing the
//! environment of a running test would need `unsafe`. So every test re-runs this test binary as a
//! child process that runs only that test, with `SOFTHSM2_CONF` naming a configuration whose
//! token directory is a fresh temporary directory holding one token, initialized with
//! `softhsm2-util`. The module is found as the provider finds it: `OUTPOST_PKCS11_MODULE`, else
//! the usual SoftHSM2 install locations. Without SoftHSM2 these tests fail, saying how to get it.

use std::io::{Cursor, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use aes_kw::KekAes256;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::{AuthPin, Date};
use outpost_keys::pkcs11::{locate_module, read_pin_file};
use outpost_keys::{
    DataKey, DecryptingReader, EncryptingWriter, Header, KeyProvider, KeysError, Pkcs11Config,
    Pkcs11Provider, RangeReader, WrapAlgorithm, open, rewrap, rewrap_file, seal,
};

/// Set in the child process: the label of the token prepared for it.
const CHILD_ENV: &str = "OUTPOST_SOFTHSM_TEST_TOKEN";
const USER_PIN: &str = "4711-user-pin";
const SO_PIN: &str = "4711-so-pin";
const KEY_ID: &str = "customer-kek";

const INSTALL_HINT: &str = "these tests need SoftHSM2: install it with `apt-get install softhsm2` \
     (Debian/Ubuntu; it provides libsofthsm2.so and softhsm2-util), or point \
     OUTPOST_PKCS11_MODULE at libsofthsm2.so and put softhsm2-util on PATH";

/// The token a test runs against (in the child process).
struct Hsm {
    module: PathBuf,
    label: String,
}

impl Hsm {
    fn config(&self) -> Pkcs11Config {
        Pkcs11Config::new(&self.module, &self.label, USER_PIN, KEY_ID)
    }

    fn provider(&self) -> Pkcs11Provider {
        Pkcs11Provider::open_or_create(&self.config()).unwrap()
    }

    /// A logged-in session of our own, to look at the token the way a customer's tooling would.
    fn raw_session(&self) -> Session {
        let ctx = Pkcs11::new(&self.module).unwrap();
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => panic!("C_Initialize: {e}"),
        }
        let slot = ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|&s| ctx.get_token_info(s).unwrap().label().trim_end() == self.label)
            .expect("the test token is present");
        let session = ctx.open_rw_session(slot).unwrap();
        match session.login(UserType::User, Some(&AuthPin::from(USER_PIN))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => panic!("C_Login: {e}"),
        }
        session
    }
}

fn kek_object(session: &Session, version: u32) -> ObjectHandle {
    let found = session
        .find_objects(&[Attribute::Label(
            format!("{KEY_ID}/v{version}").into_bytes(),
        )])
        .unwrap();
    assert_eq!(found.len(), 1, "exactly one object for version {version}");
    found[0]
}

fn module_or_fail() -> PathBuf {
    locate_module().unwrap_or_else(|e| panic!("{e}\n{INSTALL_HINT}"))
}

/// Runs `body` against a fresh SoftHSM2 token, in a child process of this test binary.
fn with_softhsm(body: impl FnOnce(&Hsm)) {
    if let Ok(label) = std::env::var(CHILD_ENV) {
        body(&Hsm {
            module: module_or_fail(),
            label,
        });
        return;
    }
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .expect("libtest names the test thread after the test")
        .to_owned();
    module_or_fail();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    // Token labels are at most 32 bytes; one token per test.
    let label: String = test.chars().take(32).collect();
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", &label])
        .args(["--so-pin", SO_PIN, "--pin", USER_PIN])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap_or_else(|e| panic!("running softhsm2-util: {e}\n{INSTALL_HINT}"));
    assert!(
        init.status.success(),
        "softhsm2-util --init-token failed: {}{}",
        String::from_utf8_lossy(&init.stdout),
        String::from_utf8_lossy(&init.stderr)
    );
    let child = Command::new(std::env::current_exe().unwrap())
        .args([&test, "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD_ENV, &label)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(
        child.status.success() && stdout.contains("1 passed"),
        "test {test} failed against SoftHSM2 ({}):\n{stdout}\n{stderr}",
        child.status
    );
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn decrypt(provider: &dyn KeyProvider, object: &[u8]) -> Result<Vec<u8>, KeysError> {
    open(provider, object)
}

fn version_of(object: &[u8]) -> u32 {
    Header::parse(object).unwrap().0.wrapped.version
}

#[test]
fn an_object_sealed_with_the_hsm_key_opens_end_to_end() {
    with_softhsm(|hsm| {
        let keys = hsm.provider();
        assert_eq!(keys.current_version().unwrap(), 1);
        let data = pattern(300_000);
        let mut w = EncryptingWriter::with_segment_size(&keys, Vec::new(), 4096).unwrap();
        for chunk in data.chunks(1000) {
            w.write_all(chunk).unwrap();
        }
        let object = w.finish().unwrap();

        let header = Header::parse(&object).unwrap().0;
        assert_eq!(header.key_id, KEY_ID);
        assert_eq!(header.wrapped.algorithm, WrapAlgorithm::Aes256KwPad);
        assert_eq!(header.wrapped.version, 1);
        assert_eq!(
            header.wrapped.bytes.len(),
            40,
            "RFC 5649 output for 32 bytes"
        );

        let mut plain = Vec::new();
        DecryptingReader::new(&keys, &object[..])
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, data);
        let mut range = RangeReader::new(&keys, Cursor::new(&object)).unwrap();
        assert_eq!(range.read_range(5000, 10_000).unwrap(), &data[5000..15_000]);

        // A second provider (as after a restart) opens the same key without creating one.
        let again = Pkcs11Provider::open(&hsm.config()).unwrap();
        assert_eq!(again.versions().unwrap(), vec![1]);
        assert_eq!(decrypt(&again, &object).unwrap(), data);
    });
}

#[test]
fn the_kek_is_generated_in_the_token_and_its_value_cannot_be_read() {
    with_softhsm(|hsm| {
        let _keys = hsm.provider();
        let session = hsm.raw_session();
        let kek = kek_object(&session, 1);
        let attrs = session
            .get_attributes(
                kek,
                &[
                    AttributeType::Value,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Local,
                    AttributeType::Token,
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                ],
            )
            .unwrap();
        assert!(
            !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
            "CKA_VALUE of the KEK must not be readable: {attrs:?}"
        );
        for expected in [
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::AlwaysSensitive(true),
            Attribute::NeverExtractable(true),
            Attribute::Local(true),
            Attribute::Token(true),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
        ] {
            assert!(attrs.contains(&expected), "{expected:?} in {attrs:?}");
        }

        // Nor can it be wrapped out under another key, or be made extractable afterwards.
        let other = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(false),
                    Attribute::Wrap(true),
                ],
            )
            .unwrap();
        assert!(
            session
                .wrap_key(&Mechanism::AesKeyWrapPad, other, kek)
                .is_err()
        );
        assert!(
            session
                .update_attributes(kek, &[Attribute::Extractable(true)])
                .is_err()
        );
        assert!(
            session
                .update_attributes(kek, &[Attribute::Sensitive(false)])
                .is_err()
        );
    });
}

#[test]
fn the_hsm_key_wrap_with_padding_equals_the_software_rfc_5649_wrap() {
    with_softhsm(|hsm| {
        let keys = hsm.provider();
        // A known, test-only KEK imported as version 2 (extractable on purpose, so that the
        // software side can use the same bytes).
        let kek_bytes: [u8; 32] = std::array::from_fn(|i| i as u8);
        let session = hsm.raw_session();
        session
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Label(format!("{KEY_ID}/v2").into_bytes()),
                Attribute::Value(kek_bytes.to_vec()),
            ])
            .unwrap();
        assert_eq!(keys.current_version().unwrap(), 2);

        let software = KekAes256::new((&kek_bytes).into());
        for seed in [0u8, 0x20, 0xff] {
            let data_key = DataKey::from_bytes(std::array::from_fn(|i| seed ^ (i as u8 * 7)));
            let by_hsm = keys.wrap(&data_key).unwrap();
            let by_software = software.wrap_with_padding_vec(data_key.as_bytes()).unwrap();
            assert_eq!(by_hsm.version, 2);
            assert_eq!(by_hsm.bytes, by_software, "HSM and software KWP differ");

            // And the other way round: the HSM unwraps what the software wrapped.
            let wrapped = outpost_keys::WrappedKey {
                algorithm: WrapAlgorithm::Aes256KwPad,
                version: 2,
                bytes: by_software,
            };
            assert_eq!(
                keys.unwrap(KEY_ID, &wrapped).unwrap().as_bytes(),
                data_key.as_bytes()
            );
        }
    });
}

#[test]
fn rotation_then_rewrap_moves_objects_to_the_new_version_and_old_objects_still_open() {
    with_softhsm(|hsm| {
        let keys = hsm.provider();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.enc");
        let data = pattern(20_000);
        let mut w =
            EncryptingWriter::with_segment_size(&keys, std::fs::File::create(&path).unwrap(), 1024)
                .unwrap();
        w.write_all(&data).unwrap();
        w.finish().unwrap();
        let in_memory = seal(&keys, b"left under version 1").unwrap();
        let before = std::fs::read(&path).unwrap();
        let header_len = Header::parse(&before).unwrap().1;

        assert_eq!(keys.rotate().unwrap(), 2);
        assert_eq!(keys.current_version().unwrap(), 2);
        assert_eq!(keys.versions().unwrap(), vec![1, 2]);
        // Old objects open without any rewrap.
        assert_eq!(decrypt(&keys, &before).unwrap(), data);
        assert_eq!(version_of(&seal(&keys, b"new").unwrap()), 2);

        let header = rewrap_file(&keys, &path).unwrap();
        assert_eq!(header.wrapped.version, 2);
        let after = std::fs::read(&path).unwrap();
        assert_eq!(
            after[header_len..],
            before[header_len..],
            "segments untouched"
        );
        assert_eq!(decrypt(&keys, &after).unwrap(), data);
        let rewrapped = rewrap(&keys, &in_memory).unwrap();
        assert_eq!(version_of(&rewrapped), 2);

        // Once everything is rewrapped, version 1 can be disabled; the rewrapped object still
        // opens, the one left behind does not.
        keys.disable_version(1).unwrap();
        assert_eq!(decrypt(&keys, &after).unwrap(), data);
        assert!(matches!(
            decrypt(&keys, &in_memory),
            Err(KeysError::KeyVersionDisabled { version: 1, .. })
        ));
    });
}

#[test]
fn a_destroyed_key_version_reports_missing_and_never_plaintext() {
    with_softhsm(|hsm| {
        let keys = hsm.provider();
        let object = seal(&keys, b"customer data").unwrap();
        keys.rotate().unwrap();
        keys.destroy_version(1).unwrap();
        let err = decrypt(&keys, &object).unwrap_err();
        assert!(matches!(
            err,
            KeysError::KeyVersionMissing { version: 1, .. }
        ));
        assert_eq!(err.to_string(), "key customer-kek version 1 is missing");
        assert!(DecryptingReader::new(&keys, &object[..]).is_err());
        assert!(RangeReader::new(&keys, Cursor::new(&object)).is_err());

        // Opening a key id the token does not hold is the same error, unless asked to create.
        let config = Pkcs11Config {
            key_id: "never-created".into(),
            ..hsm.config()
        };
        assert!(matches!(
            Pkcs11Provider::open(&config),
            Err(KeysError::KeyVersionMissing { version: 1, .. })
        ));
    });
}

#[test]
fn a_disabled_key_version_is_refused_by_the_token_and_reports_disabled() {
    with_softhsm(|hsm| {
        let keys = hsm.provider();
        let object = seal(&keys, b"customer data").unwrap();
        keys.disable_version(1).unwrap();

        let err = decrypt(&keys, &object).unwrap_err();
        assert!(matches!(
            err,
            KeysError::KeyVersionDisabled { version: 1, .. }
        ));
        assert_eq!(err.to_string(), "key customer-kek version 1 is disabled");
        // Nothing can be sealed either: the only version is disabled.
        assert!(matches!(
            seal(&keys, b"more"),
            Err(KeysError::KeyVersionDisabled { version: 1, .. })
        ));

        // The token itself refuses the key, not only the provider.
        let session = hsm.raw_session();
        let kek = kek_object(&session, 1);
        let wrapped = Header::parse(&object).unwrap().0.wrapped.bytes;
        let refused = session.unwrap_key(
            &Mechanism::AesKeyWrapPad,
            kek,
            &wrapped,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
            ],
        );
        assert!(
            matches!(
                refused,
                Err(CkError::Pkcs11(RvError::KeyFunctionNotPermitted, _))
            ),
            "{refused:?}"
        );

        keys.enable_version(1).unwrap();
        assert_eq!(decrypt(&keys, &object).unwrap(), b"customer data");
    });
}

#[test]
fn a_key_version_past_its_end_date_reports_expired() {
    with_softhsm(|hsm| {
        let keys = hsm.provider();
        // SoftHSM2 2.6 cannot read back CKA_END_DATE of a private object (CKR_GENERAL_ERROR;
        // the provider then fails closed), so version 2 is a public test-only key.
        let session = hsm.raw_session();
        let kek = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(true),
                    Attribute::Private(false),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(true),
                    Attribute::Label(format!("{KEY_ID}/v2").into_bytes()),
                ],
            )
            .unwrap();
        let object = seal(&keys, b"customer data").unwrap();
        assert_eq!(version_of(&object), 2);

        let end = |y: &[u8; 4], m: &[u8; 2], d: &[u8; 2]| Attribute::EndDate(Date::new(*y, *m, *d));
        session
            .update_attributes(kek, &[end(b"2001", b"02", b"03")])
            .unwrap();
        let err = decrypt(&keys, &object).unwrap_err();
        assert!(
            matches!(err, KeysError::KeyVersionExpired { version: 2, .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "key customer-kek version 2 has expired (end date 2001-02-03)"
        );
        // New data goes under the newest version that has not expired.
        assert_eq!(keys.current_version().unwrap(), 1);

        session
            .update_attributes(kek, &[end(b"9999", b"12", b"31")])
            .unwrap();
        assert_eq!(decrypt(&keys, &object).unwrap(), b"customer data");
        assert_eq!(keys.current_version().unwrap(), 2);
    });
}

#[test]
fn a_tampered_wrapped_key_is_rejected_by_the_token() {
    with_softhsm(|hsm| {
        let keys = hsm.provider();
        let mut object = seal(&keys, b"customer data").unwrap();
        let header_len = Header::parse(&object).unwrap().1;
        object[header_len - 16 - 5] ^= 1;
        assert!(matches!(
            decrypt(&keys, &object),
            Err(KeysError::WrappedKeyRejected { version: 1, .. })
        ));
    });
}

#[test]
fn a_wrong_pin_is_a_clear_error() {
    with_softhsm(|hsm| {
        let config = Pkcs11Config {
            user_pin: "not-the-pin".to_owned().into(),
            ..hsm.config()
        };
        let err = Pkcs11Provider::open_or_create(&config).unwrap_err();
        assert!(matches!(err, KeysError::WrongPin { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("wrong user PIN for PKCS#11 token {:?}", hsm.label)
        );
    });
}

#[test]
fn an_unknown_token_or_module_is_reported_as_unavailable() {
    with_softhsm(|hsm| {
        let config = Pkcs11Config {
            token_label: "no-such-token".into(),
            ..hsm.config()
        };
        let err = Pkcs11Provider::open_or_create(&config).unwrap_err();
        assert!(matches!(err, KeysError::TokenUnavailable { .. }), "{err}");
        assert!(err.to_string().contains("no-such-token"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let config = Pkcs11Config {
            module: dir.path().join("libmissing-pkcs11.so"),
            ..hsm.config()
        };
        let err = Pkcs11Provider::open_or_create(&config).unwrap_err();
        assert!(
            matches!(err, KeysError::Pkcs11ModuleUnavailable { .. }),
            "{err}"
        );
    });
}

#[test]
fn the_pin_can_come_from_a_private_file_but_not_from_an_open_one() {
    with_softhsm(|hsm| {
        let dir = tempfile::tempdir().unwrap();
        let pin_file = dir.path().join("user.pin");
        std::fs::write(&pin_file, format!("{USER_PIN}\n")).unwrap();
        let set_mode =
            |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        set_mode(&pin_file, 0o600);
        assert_eq!(read_pin_file(&pin_file).unwrap().as_str(), USER_PIN);
        let config =
            Pkcs11Config::with_pin_file(&hsm.module, &hsm.label, &pin_file, KEY_ID).unwrap();
        let keys = Pkcs11Provider::open_or_create(&config).unwrap();
        assert_eq!(open(&keys, &seal(&keys, b"x").unwrap()).unwrap(), b"x");
        assert!(!format!("{config:?}").contains(USER_PIN), "PIN redacted");

        set_mode(&pin_file, 0o644);
        assert!(matches!(
            read_pin_file(&pin_file),
            Err(KeysError::PinFile { .. })
        ));
        let empty = dir.path().join("empty.pin");
        std::fs::write(&empty, "").unwrap();
        set_mode(&empty, 0o600);
        assert!(matches!(
            read_pin_file(&empty),
            Err(KeysError::PinFile { .. })
        ));
    });
}

#[test]
fn many_threads_seal_and_open_through_one_provider_while_it_rotates() {
    with_softhsm(|hsm| {
        let keys = hsm.provider();
        let first = seal(&keys, b"sealed before the threads").unwrap();
        std::thread::scope(|s| {
            for t in 0..6u8 {
                let (keys, first) = (&keys, &first);
                s.spawn(move || {
                    for i in 0..25u8 {
                        let data = vec![t ^ i; 100 + usize::from(i)];
                        let object = seal(keys, &data).unwrap();
                        assert_eq!(open(keys, &object).unwrap(), data);
                        assert_eq!(open(keys, first).unwrap(), b"sealed before the threads");
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..5 {
                    keys.rotate().unwrap();
                }
            });
        });
        assert_eq!(keys.current_version().unwrap(), 6);
        assert_eq!(keys.versions().unwrap(), (1..=6).collect::<Vec<_>>());
    });
}

#[test]
fn the_provider_logs_in_again_when_the_token_logged_it_out() {
    with_softhsm(|hsm| {
        let keys = hsm.provider();
        let object = seal(&keys, b"customer data").unwrap();
        // Login state is per application: logging out any session logs out the provider's
        // pooled sessions too, as an HSM reconnect would.
        let session = hsm.raw_session();
        session.logout().unwrap();
        assert_eq!(decrypt(&keys, &object).unwrap(), b"customer data");
        assert_eq!(version_of(&seal(&keys, b"more").unwrap()), 1);
    });
}

#[test]
fn rotating_the_hsm_key_and_rewrapping_under_concurrent_reads_fails_no_read() {
    with_softhsm(|hsm| {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let keys = hsm.provider();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.enc");
        let data = pattern(64 * 1024 + 3);
        let mut w =
            EncryptingWriter::with_segment_size(&keys, std::fs::File::create(&path).unwrap(), 4096)
                .unwrap();
        w.write_all(&data).unwrap();
        w.finish().unwrap();

        let rotating = AtomicBool::new(true);
        let reads = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    while rotating.load(Ordering::SeqCst) {
                        let file = std::fs::File::open(&path).unwrap();
                        let mut plain = Vec::new();
                        DecryptingReader::new(&keys, file)
                            .unwrap()
                            .read_to_end(&mut plain)
                            .unwrap();
                        assert!(plain == data, "wrong plaintext");
                        reads.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..10 {
                    let version = keys.rotate().unwrap();
                    assert_eq!(rewrap_file(&keys, &path).unwrap().wrapped.version, version);
                }
                rotating.store(false, Ordering::SeqCst);
            });
        });
        assert!(reads.load(Ordering::SeqCst) > 0);
        assert_eq!(version_of(&std::fs::read(&path).unwrap()), 11);
    });
}
