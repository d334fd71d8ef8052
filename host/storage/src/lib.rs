//! Edge-local and cloud-tiered shares for Outpost.
//!
//! A [`Share`] is a local directory plus (for cloud-tiered shares) an object-store target.
//! The engine keeps a crash-safe redb journal of every file's state (`local` → `uploading` →
//! `synced` → `evicted` and back on recall), uploads settled files (multipart and resumable
//! for large ones, digest-checked, retried with backoff, throttled by a bandwidth schedule),
//! evicts synced, unpinned files to zero-length stubs, recalls them on read (whole with a
//! digest check, or by ranged GET for large files; one download for concurrent readers), and
//! slows writers down to the upload rate when the quota is full of unsynced data.
//!
//! # Stubs
//! An evicted file is a zero-length regular file at its path plus a journal entry holding its
//! size and digest. Zero-length (rather than a sparse file of the original size) so that a
//! reader bypassing the engine sees an obviously empty file, never plausible zeros; a process
//! that writes over a stub simply creates new local content, which the engine uploads.
//!
//! # Crash safety
//! Every state change is committed to the journal before the step that depends on it: the
//! `uploading` state and multipart record before parts are sent, each part's record after the
//! part is stored (parts recorded are never sent again), `synced` only after the object was
//! verified, `evicted` before the stub replaces the file (atomic rename), the digest before a
//! recalled file is renamed in. On open the journal is reconciled with the directory.

mod bandwidth;
mod crypt;
mod error;
mod journal;
mod path;
mod remote;
mod share;
mod spec;
mod stats;
mod tiering;

pub use bandwidth::{BandwidthSchedule, ScheduleWindow, Throttle, TimeOfDay, Weekday};
pub use crypt::{ENCRYPTED_METADATA_KEY, sealed_unit_len};
pub use error::{Result, StorageError};
pub use journal::{FileEntry, FileState, PartEvent, PartEventKind, PartRecord, UploadRecord};
pub use path::{MAX_COMPONENT_BYTES, MAX_PATH_BYTES, STATE_DIR, SharePath};
pub use remote::DIGEST_METADATA_KEY;
pub use share::{RefreshReport, Reservation, ScanReport, Share, SyncReport, UploadOutcome};
pub use spec::{RetryPolicy, ShareKind, ShareOptions, ShareSpec, SharedKeyProvider};
pub use stats::ShareStats;
pub use tiering::{Action, FileStat, TieringInput, VolumeState};
