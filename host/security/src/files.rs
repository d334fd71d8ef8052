//! Private files: written atomically (temporary file, fsync, rename) with restrictive modes.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::SecurityError;

/// Writes `bytes` to `path` atomically; `private` files get mode 0600 (Unix).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), SecurityError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    let result = write_new(&tmp, bytes, private).and_then(|()| {
        fs::rename(&tmp, path).map_err(|e| SecurityError::io(path, e))?;
        sync_parent(path);
        Ok(())
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_new(tmp: &Path, bytes: &[u8], private: bool) -> Result<(), SecurityError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(tmp).map_err(|e| SecurityError::io(tmp, e))?;
    // A leftover temporary file from a crashed run keeps its old mode; set it explicitly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if private { 0o600 } else { 0o644 };
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| SecurityError::io(tmp, e))?;
    }
    f.write_all(bytes).map_err(|e| SecurityError::io(tmp, e))?;
    f.sync_all().map_err(|e| SecurityError::io(tmp, e))
}

/// Best effort: makes a rename durable.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(dir) = fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

/// Creates `dir` (and its parents) if needed; a directory this call creates gets mode 0700.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), SecurityError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| SecurityError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| SecurityError::io(dir, e))?;
    }
    Ok(())
}

/// Whether `path` exists (a broken symlink counts as existing, so it is never overwritten).
pub(crate) fn exists(path: &Path) -> Result<bool, SecurityError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SecurityError::io(path, e)),
    }
}

/// Reads `path` as UTF-8 text.
pub(crate) fn read_text(path: &Path) -> Result<String, SecurityError> {
    let bytes = fs::read(path).map_err(|e| SecurityError::io(path, e))?;
    String::from_utf8(bytes).map_err(|_| SecurityError::corrupt(path, "not UTF-8 text"))
}

/// Warns when a private file can be read by group or others.
pub(crate) fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "private file is readable by other users; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
