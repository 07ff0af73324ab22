//! `gasbench doctor`'s checks against the real runtime: what the issue
//! asks doctor to report on this kind of machine.

use gasbench_env::checks::{Status, check_runtime};
use gasbench_env::version::Version;

#[test]
fn the_provisioned_runtime_meets_every_requirement() {
    let (_cache, rt) = gasbench_e2e::runtime();
    let checks = check_runtime(&rt);
    let failed: Vec<_> = checks.iter().filter(|c| c.failed_required()).collect();
    assert!(failed.is_empty(), "failing: {failed:#?}");

    let found = |name: &str| {
        checks
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.found.clone())
            .unwrap_or_else(|| panic!("no {name} check"))
    };
    let qemu = found("qemu");
    assert!(qemu.ends_with("(vfio-user-pci)"), "{qemu}");
    let qemu_v = Version::find_in(&qemu).unwrap();
    assert!(qemu_v >= "10.1".parse().unwrap(), "{qemu}");
    assert_eq!(found("rust-src"), found("rustc"));
    assert!(Version::find_in(&found("bindgen")).unwrap() >= "0.71.1".parse().unwrap());
    assert!(Version::find_in(&found("virtiofsd")).is_some());
    assert!(
        checks
            .iter()
            .all(|c| c.status != Status::Fail || !c.required)
    );
}

#[test]
fn the_kvm_probe_gives_a_verdict_with_a_reason() {
    let (_cache, rt) = gasbench_e2e::runtime();
    let kernel = gasbench_env::probe_kernel(&rt, None);
    assert!(kernel.is_some(), "a kernel to probe with");
    let v =
        gasbench_env::kvm::probe_kvm(&rt, kernel.as_deref(), std::time::Duration::from_secs(30));
    // Either answer is honest here; what matters is that it comes with
    // the reason, and that an unusable KVM means TCG.
    assert!(!v.reason.is_empty());
    assert_eq!(v.accel(), if v.usable { "kvm" } else { "tcg" });
    eprintln!("kvm verdict: {} ({})", v.accel(), v.reason);
}
