//! Linux errno values by name, for STATUS decoding and fault plans.

/// The errnos a reviewer is likely to inject or see, x86-64 numbering.
const TABLE: &[(u32, &str)] = &[
    (1, "EPERM"),
    (2, "ENOENT"),
    (4, "EINTR"),
    (5, "EIO"),
    (6, "ENXIO"),
    (7, "E2BIG"),
    (9, "EBADF"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (16, "EBUSY"),
    (17, "EEXIST"),
    (19, "ENODEV"),
    (22, "EINVAL"),
    (25, "ENOTTY"),
    (28, "ENOSPC"),
    (34, "ERANGE"),
    (38, "ENOSYS"),
    (61, "ENODATA"),
    (71, "EPROTO"),
    (75, "EOVERFLOW"),
    (95, "EOPNOTSUPP"),
    (110, "ETIMEDOUT"),
];

pub const EINVAL: u32 = 22;
pub const ENOMEM: u32 = 12;
pub const ENOSPC: u32 = 28;
pub const ENOSYS: u32 = 38;

/// The largest value the kernel treats as an errno (`MAX_ERRNO`).
pub const MAX_ERRNO: u32 = 4095;

/// `ENOMEM` for 12; `None` for values without a name here.
pub fn name(errno: u32) -> Option<&'static str> {
    TABLE.iter().find(|(n, _)| *n == errno).map(|(_, s)| *s)
}

/// 12 for `ENOMEM` (case-insensitive).
pub fn from_name(name: &str) -> Option<u32> {
    TABLE
        .iter()
        .find(|(_, s)| s.eq_ignore_ascii_case(name))
        .map(|(n, _)| *n)
}

/// "ENOMEM", or the number when it has no name.
pub fn describe(errno: u32) -> String {
    match name(errno) {
        Some(n) => n.to_string(),
        None => format!("errno {errno}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (n, s) in TABLE {
            assert_eq!(name(*n), Some(*s));
            assert_eq!(from_name(s), Some(*n));
            assert_eq!(from_name(&s.to_lowercase()), Some(*n));
        }
        assert_eq!(name(0), None);
        assert_eq!(from_name("ENOTREAL"), None);
        assert_eq!(describe(12), "ENOMEM");
        assert_eq!(describe(4000), "errno 4000");
    }
}
