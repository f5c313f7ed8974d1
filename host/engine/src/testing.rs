//! The store fixture the engine's unit tests share: a store in a temporary directory with a
//! manual clock. Each test module adds its own helpers in an `impl Fixture` block (inherent
//! impls on the foreign `TempStore` itself are not allowed).

use stepwise_store_redb::testing::TempStore;

/// A fresh [`TempStore`], dereferencing to it.
pub(crate) struct Fixture(TempStore);

impl Fixture {
    pub(crate) fn new() -> Self {
        Self(TempStore::new())
    }
}

impl std::ops::Deref for Fixture {
    type Target = TempStore;
    fn deref(&self) -> &TempStore {
        &self.0
    }
}
