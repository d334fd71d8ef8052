//! [`TableSet`]: the host's tables by name, reconciled against the manifest's specs.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;

use super::snapshot::{self, SnapshotTable};
use super::{Table, TableSetError, TableSpec, TableStats};

/// Named tables shared by every plugin version and worker thread. Plugins hold an
/// `Arc<Table>` from [`TableSet::open`], so table operations never touch the set's lock.
#[derive(Debug, Default)]
pub struct TableSet {
    tables: RwLock<HashMap<String, Arc<Table>>>,
}

/// What [`TableSet::reconcile`] did, by table name (each list sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// New tables, created empty.
    pub created: Vec<String>,
    /// Tables whose spec did not change; contents kept.
    pub kept: Vec<String>,
    /// Tables whose limits grew; contents kept.
    pub grown: Vec<String>,
    /// Tables whose kind changed or whose limits shrank: replaced by an empty table.
    pub recreated: Vec<String>,
    /// Tables no longer declared, dropped (plugins still holding one keep a detached copy until
    /// they let go).
    pub removed: Vec<String>,
}

/// What [`TableSet::restore`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Tables restored and how many entries each received.
    pub restored: Vec<(String, u64)>,
    /// Tables in the snapshot that the set does not have (or has with another kind).
    pub skipped_tables: Vec<String>,
    /// Entries the current limits refused.
    pub rejected_entries: u64,
}

impl TableSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table named `name`.
    pub fn open(&self, name: &str) -> Option<Arc<Table>> {
        self.tables.read().get(name).cloned()
    }

    /// The tables' names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.tables.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Every table's name and counters, sorted by name.
    pub fn stats(&self) -> Vec<(String, TableStats)> {
        let mut stats: Vec<_> = self
            .tables
            .read()
            .iter()
            .map(|(name, table)| (name.clone(), table.stats()))
            .collect();
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        stats
    }

    /// Makes the set match `specs`: keeps tables whose spec is unchanged or only grew (with
    /// their contents), creates new ones, replaces ones whose kind changed or limits shrank,
    /// and drops undeclared ones. Every spec is checked first; on an error nothing changes.
    pub fn reconcile(&self, specs: &[TableSpec]) -> Result<ReconcileReport, TableSetError> {
        let mut names = HashSet::new();
        for spec in specs {
            spec.validate()?;
            if !names.insert(spec.name.as_str()) {
                return Err(TableSetError::DuplicateTable(spec.name.clone()));
            }
        }
        let mut report = ReconcileReport::default();
        let mut tables = self.tables.write();
        for spec in specs {
            match tables.get(&spec.name) {
                None => {
                    tables.insert(spec.name.clone(), Arc::new(Table::new(spec)?));
                    report.created.push(spec.name.clone());
                }
                Some(table) => {
                    let current = table.spec();
                    if current == *spec {
                        report.kept.push(spec.name.clone());
                    } else if spec.covers(&current) {
                        table.grow(spec);
                        report.grown.push(spec.name.clone());
                    } else {
                        tracing::warn!(
                            table = spec.name,
                            "table spec shrank or changed kind; contents dropped"
                        );
                        tables.insert(spec.name.clone(), Arc::new(Table::new(spec)?));
                        report.recreated.push(spec.name.clone());
                    }
                }
            }
        }
        tables.retain(|name, _| {
            let keep = names.contains(name.as_str());
            if !keep {
                report.removed.push(name.clone());
            }
            keep
        });
        for list in [
            &mut report.created,
            &mut report.kept,
            &mut report.grown,
            &mut report.recreated,
            &mut report.removed,
        ] {
            list.sort();
        }
        Ok(report)
    }

    /// Writes every table (spec and entries) to `path`, atomically: a temporary file beside it
    /// is written, synced and renamed over it. Each table is read under its own locks, so the
    /// snapshot is consistent per shard, not across tables.
    pub fn snapshot(&self, path: &Path) -> Result<(), TableSetError> {
        let mut tables: Vec<Arc<Table>> = self.tables.read().values().cloned().collect();
        tables.sort_by(|a, b| a.name().cmp(b.name()));
        let bytes = snapshot::encode(&tables);
        snapshot::write_atomically(path, &bytes)
    }

    /// Loads a snapshot written by [`TableSet::snapshot`] into the tables the set already has
    /// (reconcile from the manifest first: it decides which tables exist). Each restored table
    /// is cleared, then refilled under its current limits. The whole file is checked before
    /// any table changes.
    pub fn restore(&self, path: &Path) -> Result<RestoreReport, TableSetError> {
        let bytes = std::fs::read(path).map_err(|source| TableSetError::SnapshotIo {
            path: path.to_owned(),
            source,
        })?;
        let snapshot =
            snapshot::decode(&bytes).map_err(|reason| TableSetError::CorruptSnapshot {
                path: path.to_owned(),
                reason,
            })?;
        let mut report = RestoreReport::default();
        for SnapshotTable { spec, entries } in snapshot {
            let table = self.open(&spec.name).filter(|t| t.kind() == spec.kind);
            let Some(table) = table else {
                report.skipped_tables.push(spec.name);
                continue;
            };
            table.clear();
            let mut restored = 0;
            for (key, value) in entries {
                match table.put(key, value) {
                    Ok(()) => restored += 1,
                    Err(_) => report.rejected_entries += 1,
                }
            }
            report.restored.push((spec.name, restored));
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{TableKind, TableSetError};

    fn exact(name: &str, max: u64) -> TableSpec {
        TableSpec::new(name, TableKind::Exact, max)
    }

    #[test]
    fn reconcile_creates_keeps_grows_recreates_and_removes() {
        let set = TableSet::new();
        let first = set
            .reconcile(&[
                exact("keep", 10),
                exact("grow", 10),
                exact("shrink", 10),
                exact("gone", 1),
            ])
            .unwrap();
        assert_eq!(first.created, ["gone", "grow", "keep", "shrink"]);
        for name in ["keep", "grow", "shrink"] {
            set.open(name).unwrap().put(b"k", b"v").unwrap();
        }
        let keep_before = set.open("keep").unwrap();

        let second = set
            .reconcile(&[
                exact("keep", 10),
                exact("grow", 20),
                exact("shrink", 5),
                exact("new", 1),
            ])
            .unwrap();
        assert_eq!(
            second,
            ReconcileReport {
                created: vec!["new".into()],
                kept: vec!["keep".into()],
                grown: vec!["grow".into()],
                recreated: vec!["shrink".into()],
                removed: vec!["gone".into()],
            }
        );
        assert!(Arc::ptr_eq(&keep_before, &set.open("keep").unwrap()));
        assert_eq!(set.open("keep").unwrap().get(b"k").unwrap(), b"v");
        assert_eq!(set.open("grow").unwrap().get(b"k").unwrap(), b"v");
        assert_eq!(set.open("grow").unwrap().spec().max_entries, 20);
        assert!(set.open("shrink").unwrap().is_empty());
        assert!(set.open("gone").is_none());
        assert_eq!(set.names(), ["grow", "keep", "new", "shrink"]);
    }

    #[test]
    fn a_grown_table_accepts_more_entries() {
        let set = TableSet::new();
        set.reconcile(&[exact("t", 1)]).unwrap();
        let table = set.open("t").unwrap();
        table.put(b"a", b"").unwrap();
        assert!(table.put(b"b", b"").is_err());
        set.reconcile(&[exact("t", 2)]).unwrap();
        table.put(b"b", b"").unwrap();
    }

    #[test]
    fn a_changed_kind_recreates_the_table() {
        let set = TableSet::new();
        set.reconcile(&[exact("t", 10)]).unwrap();
        let report = set
            .reconcile(&[TableSpec::new("t", TableKind::Lpm, 10)])
            .unwrap();
        assert_eq!(report.recreated, ["t"]);
        assert_eq!(set.open("t").unwrap().kind(), TableKind::Lpm);
    }

    #[test]
    fn an_invalid_or_duplicate_spec_changes_nothing() {
        let set = TableSet::new();
        set.reconcile(&[exact("t", 10)]).unwrap();
        set.open("t").unwrap().put(b"k", b"v").unwrap();
        let err = set.reconcile(&[exact("u", 1), exact("u", 2)]).unwrap_err();
        assert!(matches!(err, TableSetError::DuplicateTable(ref n) if n == "u"));
        let err = set.reconcile(&[exact("zero", 0)]).unwrap_err();
        assert!(err.to_string().contains("\"zero\""), "{err}");
        assert_eq!(set.names(), ["t"]);
        assert_eq!(set.open("t").unwrap().len(), 1);
    }

    #[test]
    fn stats_are_listed_by_name() {
        let set = TableSet::new();
        set.reconcile(&[exact("b", 1), exact("a", 1)]).unwrap();
        set.open("a").unwrap().get(b"x");
        let stats = set.stats();
        assert_eq!(stats[0].0, "a");
        assert_eq!(stats[0].1.misses, 1);
    }
}
