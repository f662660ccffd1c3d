//! The IndexedDB store (in progress).
