//! The backend conformance suite of `stepwise-store`, run against the embedded store.

use std::sync::Arc;

use stepwise_store::{Durability, Store};

use crate::RedbStore;

stepwise_store::conformance_tests!({
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path(), Durability::Immediate).unwrap();
    (Arc::new(store) as Arc<dyn Store>, dir)
});
