//! Update control for Outpost plugins (work in progress).
