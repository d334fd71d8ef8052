use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use proptest::prelude::*;

use super::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const NOW: u64 = 1_750_000_000_000;

fn file(size: u64, accessed_days_ago: u64, state: State) -> File {
    let at = NOW - accessed_days_ago * MS_PER_DAY;
    File {
        size,
        modified_unix_ms: at,
        accessed_unix_ms: at,
        state,
        pinned: false,
    }
}

fn synced(size: u64, accessed_days_ago: u64) -> File {
    file(size, accessed_days_ago, State::Synced)
}

fn volume(capacity_bytes: u64, used_bytes: u64) -> Volume {
    Volume {
        capacity_bytes,
        used_bytes,
        now_unix_ms: NOW,
    }
}

fn config() -> Config {
    Config::default()
}

fn lookup(pairs: &[(&str, &str)]) -> impl FnMut(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |key| map.get(key).cloned()
}

#[test]
fn free_space_policy_evicts_least_recently_accessed_synced_files_until_the_target_is_met_and_no_more()
 {
    // 100 MiB volume, 90 MiB used, 20% to keep free: 10 MiB must go.
    let files = [
        synced(4 * MIB, 3),  // 0
        synced(4 * MIB, 10), // 1: coldest
        synced(4 * MIB, 1),  // 2: warmest
        synced(4 * MIB, 5),  // 3
        synced(4 * MIB, 7),  // 4
    ];
    let decision = decide(&config(), &volume(100 * MIB, 90 * MIB), &files);
    assert_eq!(decision.bytes_to_free, 10 * MIB);
    assert_eq!(decision.free_space_evictions, vec![1, 4, 3]);
    assert_eq!(decision.bytes_freed, 12 * MIB);
    assert!(decision.date_evictions.is_empty());
    assert!(decision.uploads.is_empty());
}

#[test]
fn free_space_policy_stops_exactly_at_the_target() {
    // 2 MiB to free, two cold 1 MiB files: the third is left alone.
    let files = [synced(MIB, 9), synced(MIB, 8), synced(MIB, 7)];
    let decision = decide(&config(), &volume(10 * MIB, 10 * MIB), &files);
    assert_eq!(decision.bytes_to_free, 2 * MIB);
    assert_eq!(decision.free_space_evictions, vec![0, 1]);
    assert_eq!(decision.bytes_freed, 2 * MIB);
}

#[test]
fn free_space_policy_does_nothing_when_the_target_is_already_met() {
    let files = [synced(MIB, 100), synced(MIB, 200)];
    let decision = decide(&config(), &volume(100 * MIB, 80 * MIB), &files);
    assert_eq!(decision.bytes_to_free, 0);
    assert!(decision.is_empty());
}

#[test]
fn free_space_policy_evicts_everything_it_may_when_that_is_not_enough() {
    let mut pinned = synced(50 * MIB, 100);
    pinned.pinned = true;
    let files = [synced(MIB, 1), pinned, synced(2 * MIB, 2)];
    let decision = decide(&config(), &volume(100 * MIB, 100 * MIB), &files);
    assert_eq!(decision.bytes_to_free, 20 * MIB);
    assert_eq!(decision.free_space_evictions, vec![2, 0]);
    assert_eq!(decision.bytes_freed, 3 * MIB);
}

#[test]
fn free_space_policy_breaks_access_time_ties_by_input_order() {
    let files = [synced(MIB, 4), synced(MIB, 4), synced(MIB, 4)];
    let decision = decide(&config(), &volume(10 * MIB, 9 * MIB), &files);
    assert_eq!(decision.free_space_evictions, vec![0]);
}

#[test]
fn date_policy_evicts_only_files_not_accessed_within_the_configured_days() {
    let config = Config {
        date_policy_days: 30,
        ..config()
    };
    let files = [
        synced(MIB, 29),  // recent: kept
        synced(MIB, 31),  // old
        synced(MIB, 30),  // exactly 30 days: old
        synced(MIB, 400), // oldest
        synced(MIB, 0),   // just read: kept
    ];
    let decision = decide(&config, &volume(100 * MIB, 10 * MIB), &files);
    assert!(decision.free_space_evictions.is_empty());
    assert_eq!(decision.date_evictions, vec![3, 1, 2]);
}

#[test]
fn date_policy_is_off_when_days_is_zero() {
    let files = [synced(MIB, 10_000)];
    let decision = decide(&config(), &volume(100 * MIB, 10 * MIB), &files);
    assert!(decision.is_empty());
}

#[test]
fn date_policy_keeps_files_read_in_the_future_of_a_skewed_clock() {
    let config = Config {
        date_policy_days: 1,
        ..config()
    };
    let mut future = synced(MIB, 0);
    future.accessed_unix_ms = NOW + 10 * MS_PER_DAY;
    let decision = decide(&config, &volume(100 * MIB, 0), &[future]);
    assert!(decision.is_empty());
}

#[test]
fn free_space_policy_takes_precedence_over_the_date_policy() {
    // The date policy alone would keep the files read within 60 days; the volume needs 25 MiB
    // more free space, so recently read files go too, and the old file goes exactly once.
    let config = Config {
        date_policy_days: 60,
        ..config()
    };
    let files = [
        synced(10 * MIB, 1),   // 0: recent
        synced(10 * MIB, 90),  // 1: old
        synced(10 * MIB, 2),   // 2: recent
        synced(10 * MIB, 0),   // 3: recent, warmest
        synced(10 * MIB, 120), // 4: old, coldest
    ];
    let decision = decide(&config, &volume(100 * MIB, 85 * MIB), &files);
    assert_eq!(decision.bytes_to_free, 5 * MIB);
    assert_eq!(decision.free_space_evictions, vec![4]);
    assert_eq!(decision.date_evictions, vec![1]);

    let decision = decide(&config, &volume(100 * MIB, 100 * MIB), &files);
    assert_eq!(decision.bytes_to_free, 20 * MIB);
    assert_eq!(decision.free_space_evictions, vec![4, 1]);
    assert!(decision.date_evictions.is_empty());

    let decision = decide(&config, &volume(100 * MIB, 115 * MIB), &files);
    assert_eq!(decision.free_space_evictions, vec![4, 1, 2, 0]);
    assert!(decision.date_evictions.is_empty());
}

#[test]
fn unsynced_pinned_small_and_evicted_files_are_never_evicted() {
    let config = Config {
        date_policy_days: 1,
        ..config()
    };
    let mut pinned = synced(MIB, 500);
    pinned.pinned = true;
    let files = [
        file(MIB, 500, State::Local),
        file(MIB, 500, State::Uploading),
        file(MIB, 500, State::Evicted),
        pinned,
        synced(64 * KIB - 1, 500),
        synced(0, 500),
    ];
    // Over quota, but only mildly short of space: not low-space mode.
    let decision = decide(&config, &volume(100 * MIB, 85 * MIB), &files);
    assert!(!decision.low_space);
    assert!(decision.free_space_evictions.is_empty());
    assert!(decision.date_evictions.is_empty());
    assert_eq!(decision.uploads, vec![0]);
}

#[test]
fn files_at_exactly_the_minimum_size_may_be_evicted() {
    let files = [synced(64 * KIB - 1, 9), synced(64 * KIB, 8)];
    let decision = decide(&config(), &volume(MIB, 900 * KIB), &files);
    assert!(!decision.low_space);
    assert_eq!(decision.free_space_evictions, vec![1]);
}

#[test]
fn uploads_go_oldest_modification_first_and_stop_at_the_cap() {
    let config = Config {
        max_uploads_per_round: 3,
        ..config()
    };
    let files: Vec<File> = [5, 1, 9, 3, 7, 2]
        .iter()
        .map(|&days| file(KIB, days, State::Local))
        .collect();
    let decision = decide(&config, &volume(100 * MIB, 0), &files);
    // Modified 9, 7 and 5 days ago.
    assert_eq!(decision.uploads, vec![2, 4, 0]);
}

#[test]
fn uploads_default_to_at_most_sixty_four_per_round() {
    let files: Vec<File> = (0..100).map(|i| file(KIB, i, State::Local)).collect();
    let decision = decide(&config(), &volume(100 * MIB, 0), &files);
    assert_eq!(decision.uploads, (36..100).rev().collect::<Vec<_>>());
}

#[test]
fn uploads_are_proposed_only_for_local_files_including_pinned_ones() {
    let mut pinned = file(KIB, 1, State::Local);
    pinned.pinned = true;
    let files = [
        file(KIB, 5, State::Uploading),
        file(KIB, 5, State::Synced),
        file(KIB, 5, State::Evicted),
        pinned,
        file(1, 0, State::Local),
    ];
    let decision = decide(&config(), &volume(100 * MIB, 0), &files);
    assert_eq!(decision.uploads, vec![3, 4]);
}

#[test]
fn a_zero_upload_cap_proposes_no_uploads() {
    let config = Config {
        max_uploads_per_round: 0,
        ..config()
    };
    let files = [file(KIB, 1, State::Local)];
    assert!(decide(&config, &volume(MIB, 0), &files).uploads.is_empty());
}

#[test]
fn low_space_mode_evicts_files_below_the_minimum_size_down_to_the_floor() {
    // 5% free: low-space mode (below 10%), 15% of 1 MiB to free.
    let files = [
        synced(4 * KIB - 1, 9), // below the floor: kept
        synced(8 * KIB, 8),
        synced(4 * KIB, 7),
        synced(100 * KIB, 1),
    ];
    let decision = decide(&config(), &volume(MIB, 973 * KIB), &files);
    assert!(decision.low_space);
    assert_eq!(decision.free_space_evictions, vec![1, 2, 3]);
}

#[test]
fn outside_low_space_mode_the_minimum_size_holds() {
    // 15% free: short of the 20% target, but not low on space.
    let files = [synced(8 * KIB, 9), synced(4 * KIB, 8), synced(100 * KIB, 1)];
    let decision = decide(&config(), &volume(MIB, 870 * KIB), &files);
    assert!(!decision.low_space);
    assert_eq!(decision.free_space_evictions, vec![2]);
}

#[test]
fn low_space_mode_never_raises_a_minimum_configured_below_the_floor() {
    let config = Config {
        min_file_size_bytes: 100,
        ..config()
    };
    let files = [synced(200, 9)];
    let decision = decide(&config, &volume(MIB, MIB), &files);
    assert!(decision.low_space);
    assert_eq!(decision.free_space_evictions, vec![0]);
}

#[test]
fn low_space_mode_does_not_lower_the_minimum_for_the_date_policy() {
    let config = Config {
        date_policy_days: 1,
        ..config()
    };
    // Nothing else to evict and the volume is full: the small old file goes for space, once.
    let files = [synced(8 * KIB, 30)];
    let decision = decide(&config, &volume(MIB, MIB), &files);
    assert_eq!(decision.free_space_evictions, vec![0]);
    assert!(decision.date_evictions.is_empty());
    // Space is fine: the date policy alone keeps the small file.
    let decision = decide(&config, &volume(MIB, 0), &files);
    assert!(decision.date_evictions.is_empty());
}

#[test]
fn a_low_space_percent_of_zero_turns_low_space_mode_off() {
    let config = Config {
        low_space_percent: 0,
        ..config()
    };
    let decision = decide(&config, &volume(MIB, MIB), &[synced(8 * KIB, 1)]);
    assert!(!decision.low_space);
    assert!(decision.free_space_evictions.is_empty());
}

#[test]
fn a_zero_capacity_turns_the_free_space_policy_and_low_space_mode_off() {
    let decision = decide(&config(), &volume(0, 10 * MIB), &[synced(MIB, 1)]);
    assert!(!decision.low_space);
    assert_eq!(decision.bytes_to_free, 0);
    assert!(decision.is_empty());
}

#[test]
fn a_free_space_percent_of_zero_only_reacts_to_an_over_full_volume() {
    let config = Config {
        free_space_percent: 0,
        ..config()
    };
    let files = [synced(MIB, 2), synced(MIB, 1)];
    assert!(decide(&config, &volume(10 * MIB, 10 * MIB), &files).is_empty());
    let decision = decide(&config, &volume(10 * MIB, 10 * MIB + 1), &files);
    assert_eq!(decision.free_space_evictions, vec![0]);
}

#[test]
fn extreme_values_neither_overflow_nor_panic() {
    let config = Config {
        date_policy_days: u64::MAX,
        max_uploads_per_round: u64::MAX,
        ..config()
    };
    let mut files = vec![
        synced(u64::MAX, 0),
        synced(u64::MAX, 1),
        file(u64::MAX, 0, State::Local),
    ];
    files[0].accessed_unix_ms = 0;
    let vol = Volume {
        capacity_bytes: u64::MAX,
        used_bytes: u64::MAX,
        now_unix_ms: u64::MAX,
    };
    let decision = decide(&config, &vol, &files);
    assert_eq!(decision.free_space_evictions, vec![0]);
    assert_eq!(decision.bytes_freed, u64::MAX);
    assert_eq!(decision.uploads, vec![2]);
    assert!(decide(&config, &volume(0, 0), &[]).is_empty());
}

#[test]
fn missing_config_keys_take_the_documented_defaults() {
    let (config, warnings) = Config::from_lookup(lookup(&[]));
    assert!(warnings.is_empty());
    assert_eq!(
        config,
        Config {
            free_space_percent: 20,
            date_policy_days: 0,
            min_file_size_bytes: 65_536,
            max_uploads_per_round: 64,
            low_space_percent: 10,
            low_space_min_file_size_bytes: 4_096,
        }
    );
}

#[test]
fn config_values_are_read_from_every_key() {
    let (config, warnings) = Config::from_lookup(lookup(&[
        ("free_space_percent", " 35 "),
        ("date_policy_days", "90"),
        ("min_file_size_bytes", "1048576"),
        ("max_uploads_per_round", "8"),
        ("low_space_percent", "5"),
        ("low_space_min_file_size_bytes", "512"),
    ]));
    assert!(warnings.is_empty());
    assert_eq!(
        config,
        Config {
            free_space_percent: 35,
            date_policy_days: 90,
            min_file_size_bytes: 1_048_576,
            max_uploads_per_round: 8,
            low_space_percent: 5,
            low_space_min_file_size_bytes: 512,
        }
    );
}

#[test]
fn unparsable_or_out_of_range_config_values_are_reported_and_defaulted() {
    let (config, warnings) = Config::from_lookup(lookup(&[
        ("free_space_percent", "100"),
        ("date_policy_days", "-3"),
        ("min_file_size_bytes", "64KiB"),
        ("max_uploads_per_round", ""),
        ("low_space_percent", "101"),
        ("low_space_min_file_size_bytes", "lots"),
    ]));
    assert_eq!(config, Config::default());
    let keys: Vec<&str> = warnings.iter().map(|w| w.key).collect();
    assert_eq!(
        keys,
        vec![
            "free_space_percent",
            "date_policy_days",
            "min_file_size_bytes",
            "max_uploads_per_round",
            "low_space_percent",
            "low_space_min_file_size_bytes",
        ]
    );
    assert_eq!(
        warnings[0].to_string(),
        "config free_space_percent = \"100\" is not an integer from 0 to 99; using the default 20"
    );
}

/// A small deterministic generator (splitmix64) for the large input.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn a_million_files_are_decided_in_well_under_a_few_seconds() {
    let mut rng = SplitMix(42);
    let files: Vec<File> = (0..1_000_000)
        .map(|_| {
            let r = rng.next();
            File {
                size: r % (4 * MIB),
                modified_unix_ms: NOW - rng.next() % (365 * MS_PER_DAY),
                accessed_unix_ms: NOW - rng.next() % (365 * MS_PER_DAY),
                state: match r >> 60 {
                    0..=1 => State::Local,
                    2 => State::Uploading,
                    3..=5 => State::Evicted,
                    _ => State::Synced,
                },
                pinned: r >> 56 & 0xF == 0,
            }
        })
        .collect();
    let used: u64 = files
        .iter()
        .filter(|f| f.state != State::Evicted)
        .map(|f| f.size)
        .sum();
    let config = Config {
        date_policy_days: 180,
        ..config()
    };
    let vol = volume(used, used);
    let start = Instant::now();
    let decision = decide(&config, &vol, &files);
    let elapsed = start.elapsed();
    println!(
        "1,000,000 files: {} uploads, {} free-space and {} date evictions in {elapsed:?}",
        decision.uploads.len(),
        decision.free_space_evictions.len(),
        decision.date_evictions.len()
    );
    assert_eq!(decision.uploads.len(), 64);
    assert!(decision.bytes_freed >= decision.bytes_to_free);
    assert!(!decision.date_evictions.is_empty());
    // Generous: an O(n^2) slip would take hours, O(n log n) takes well under a second.
    assert!(elapsed.as_secs() < 10, "took {elapsed:?}");
}

fn state_strategy() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Local),
        Just(State::Uploading),
        Just(State::Synced),
        Just(State::Evicted),
    ]
}

fn file_strategy() -> impl Strategy<Value = File> {
    (
        prop_oneof![0..8 * KIB, 0..200 * KIB, Just(64 * KIB), Just(4 * KIB)],
        0..40u64,
        0..40u64,
        state_strategy(),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(size, modified, accessed, state, pinned)| File {
            size,
            // Coarse times so that ties happen.
            modified_unix_ms: NOW - modified * MS_PER_DAY / 2,
            accessed_unix_ms: NOW - accessed * MS_PER_DAY / 2,
            state,
            pinned,
        })
}

fn config_strategy() -> impl Strategy<Value = Config> {
    (
        0..=99u64,
        prop_oneof![Just(0u64), 1..30u64],
        prop_oneof![Just(64 * KIB), 0..100 * KIB],
        0..10u64,
        0..=100u64,
        prop_oneof![Just(4 * KIB), 0..100 * KIB],
    )
        .prop_map(|(free, days, min, cap, low, floor)| Config {
            free_space_percent: free,
            date_policy_days: days,
            min_file_size_bytes: min,
            max_uploads_per_round: cap,
            low_space_percent: low,
            low_space_min_file_size_bytes: floor,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_input_yields_decisions_that_respect_every_rule(
        config in config_strategy(),
        files in prop::collection::vec(file_strategy(), 0..60),
        capacity in 0..4 * MIB,
        used in 0..5 * MIB,
    ) {
        let vol = volume(capacity, used);
        let decision = decide(&config, &vol, &files);
        prop_assert_eq!(&decide(&config, &vol, &files), &decision, "deterministic");

        // Each file at most once.
        let mut seen = HashSet::new();
        for &i in decision.uploads.iter()
            .chain(&decision.free_space_evictions)
            .chain(&decision.date_evictions)
        {
            prop_assert!(i < files.len());
            prop_assert!(seen.insert(i), "file {} decided twice", i);
        }

        // Uploads: local files only, the oldest modified, in order, up to the cap.
        let local: Vec<usize> = (0..files.len()).filter(|&i| files[i].state == State::Local).collect();
        let cap = config.max_uploads_per_round as usize;
        prop_assert_eq!(decision.uploads.len(), local.len().min(cap));
        let key = |i: usize| (files[i].modified_unix_ms, i);
        for pair in decision.uploads.windows(2) {
            prop_assert!(key(pair[0]) < key(pair[1]));
        }
        if let Some(&last) = decision.uploads.last() {
            for &i in &local {
                prop_assert!(decision.uploads.contains(&i) || key(i) > key(last));
            }
        }

        // Evictions: synced, unpinned, non-empty, never below the minimum in force.
        let low = capacity > 0
            && config.low_space_percent > 0
            && (capacity.saturating_sub(used) as u128) * 100
                < capacity as u128 * config.low_space_percent as u128;
        prop_assert_eq!(decision.low_space, low);
        let space_min = if low {
            config.min_file_size_bytes.min(config.low_space_min_file_size_bytes)
        } else {
            config.min_file_size_bytes
        }.max(1);
        let date_min = config.min_file_size_bytes.max(1);
        for &i in &decision.free_space_evictions {
            let f = &files[i];
            prop_assert!(f.state == State::Synced && !f.pinned && f.size >= space_min);
        }
        for &i in &decision.date_evictions {
            let f = &files[i];
            prop_assert!(f.state == State::Synced && !f.pinned && f.size >= date_min);
        }

        // Free space: least recently read first, enough and no more, or all that may go.
        let need = if capacity == 0 { 0 } else {
            let target = (capacity as u128 * config.free_space_percent as u128).div_ceil(100);
            (used as u128 + target).saturating_sub(capacity as u128) as u64
        };
        prop_assert_eq!(decision.bytes_to_free, need);
        let freed: u64 = decision.free_space_evictions.iter().map(|&i| files[i].size).sum();
        prop_assert_eq!(decision.bytes_freed, freed);
        let eligible: Vec<usize> = (0..files.len())
            .filter(|&i| files[i].state == State::Synced && !files[i].pinned && files[i].size >= space_min)
            .collect();
        if need == 0 {
            prop_assert!(decision.free_space_evictions.is_empty());
        } else if freed < need {
            prop_assert_eq!(decision.free_space_evictions.len(), eligible.len());
        } else {
            let last = *decision.free_space_evictions.last().unwrap();
            prop_assert!(freed - files[last].size < need, "evicted more than needed");
        }
        let lru = |i: usize| (files[i].accessed_unix_ms, i);
        for pair in decision.free_space_evictions.windows(2) {
            prop_assert!(lru(pair[0]) < lru(pair[1]));
        }
        if let Some(&last) = decision.free_space_evictions.last() {
            for &i in &eligible {
                prop_assert!(decision.free_space_evictions.contains(&i) || lru(i) > lru(last));
            }
        }

        // Date: exactly the old, evictable files the free space policy left.
        let expected: HashSet<usize> = if config.date_policy_days == 0 { HashSet::new() } else {
            (0..files.len())
                .filter(|&i| {
                    let f = &files[i];
                    f.state == State::Synced && !f.pinned && f.size >= date_min
                        && NOW - f.accessed_unix_ms >= config.date_policy_days * MS_PER_DAY
                        && !decision.free_space_evictions.contains(&i)
                })
                .collect()
        };
        let got: HashSet<usize> = decision.date_evictions.iter().copied().collect();
        prop_assert_eq!(got, expected);
        for pair in decision.date_evictions.windows(2) {
            prop_assert!(lru(pair[0]) < lru(pair[1]));
        }
    }
}
