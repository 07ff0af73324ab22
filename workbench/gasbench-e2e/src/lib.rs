//! Helpers shared by the end-to-end tests in `tests/`.
//!
//! These tests use the real runtime: the cache directory gasbench setup
//! provisioned (`GASBENCH_CACHE` or /var/cache/gasbench). When something
//! they need is missing they fail with what to run, never skip.

use gasbench_env::{CacheDir, Runtime, RuntimePref};

/// The runtime the e2e tests use, resolved the way `gasbench` resolves it.
pub fn runtime() -> (CacheDir, Runtime) {
    let cache = CacheDir::from_env(None);
    let (rt, _) = gasbench_env::resolve_runtime(&cache, RuntimePref::Auto);
    if let Runtime::Toolroot(root) = &rt {
        let state = root.state();
        assert!(
            state.is_ready(),
            "the toolroot at {} is {}: run `gasbench setup` (cargo xtask setup) first",
            root.path().display(),
            state.describe()
        );
    }
    (cache, rt)
}
