//! Opening ports inside a named network namespace.
//!
//! A socket or TAP device belongs to the network namespace of the thread that created it, and
//! stays there for its whole life. So a port "in namespace `ns`" is opened on a short-lived
//! thread that first joins `ns` (`setns(2)` changes only the calling thread); the port is then
//! used from any thread. The process's own namespace is never touched.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Where `ip netns add NAME` bind-mounts its namespaces.
const NETNS_DIR: &str = "/run/netns";

/// The file of network namespace `netns`: a name under `/run/netns` (as `ip netns` manages them)
/// or an absolute path such as `/proc/PID/ns/net`.
pub fn netns_path(netns: &str) -> io::Result<PathBuf> {
    if netns.starts_with('/') {
        return Ok(PathBuf::from(netns));
    }
    if netns.is_empty() || netns.contains('/') || netns == "." || netns == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{netns:?} is not a network namespace name or absolute path"),
        ));
    }
    Ok(PathBuf::from(NETNS_DIR).join(netns))
}

/// Runs `f` on a thread that has joined network namespace `netns`, and returns its result.
pub fn run_in_netns<T, F>(netns: &str, f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let path = netns_path(netns)?;
    let file = File::open(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("network namespace {netns:?} ({}): {e}", path.display()),
        )
    })?;
    let fd = OwnedFd::from(file);
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                crate::sys::enter_network_namespace(&fd).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("joining network namespace {netns:?}: {e}"),
                    )
                })?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_map_under_run_netns() {
        assert_eq!(
            netns_path("blue").unwrap(),
            PathBuf::from("/run/netns/blue")
        );
        assert_eq!(
            netns_path("/proc/1/ns/net").unwrap(),
            PathBuf::from("/proc/1/ns/net")
        );
    }

    #[test]
    fn namespace_names_with_slashes_or_dots_are_rejected() {
        for bad in ["", ".", "..", "a/b"] {
            assert!(netns_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_namespace_is_an_error_naming_it() {
        let err = run_in_netns("outpost-no-such-namespace", || ()).unwrap_err();
        assert!(
            err.to_string().contains("outpost-no-such-namespace"),
            "{err}"
        );
    }
}
