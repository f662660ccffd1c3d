//! Implementations of the `Store` trait.
