//! Symbolic names for the numbers scenarios pass to and get back from the
//! kernel: errno values, open/at flags, fcntl commands, rlimit resources.
//! x86-64 (asm-generic) values, from the kernel's uapi headers.

/// `(name, value)` of every errno in `include/uapi/asm-generic/errno*.h`
/// (aliases such as `EWOULDBLOCK` map to their canonical value).
pub const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", 1),
    ("ENOENT", 2),
    ("ESRCH", 3),
    ("EINTR", 4),
    ("EIO", 5),
    ("ENXIO", 6),
    ("E2BIG", 7),
    ("ENOEXEC", 8),
    ("EBADF", 9),
    ("ECHILD", 10),
    ("EAGAIN", 11),
    ("ENOMEM", 12),
    ("EACCES", 13),
    ("EFAULT", 14),
    ("ENOTBLK", 15),
    ("EBUSY", 16),
    ("EEXIST", 17),
    ("EXDEV", 18),
    ("ENODEV", 19),
    ("ENOTDIR", 20),
    ("EISDIR", 21),
    ("EINVAL", 22),
    ("ENFILE", 23),
    ("EMFILE", 24),
    ("ENOTTY", 25),
    ("ETXTBSY", 26),
    ("EFBIG", 27),
    ("ENOSPC", 28),
    ("ESPIPE", 29),
    ("EROFS", 30),
    ("EMLINK", 31),
    ("EPIPE", 32),
    ("EDOM", 33),
    ("ERANGE", 34),
    ("EDEADLK", 35),
    ("ENAMETOOLONG", 36),
    ("ENOLCK", 37),
    ("ENOSYS", 38),
    ("ENOTEMPTY", 39),
    ("ELOOP", 40),
    ("ENOMSG", 42),
    ("EIDRM", 43),
    ("ECHRNG", 44),
    ("EL2NSYNC", 45),
    ("EL3HLT", 46),
    ("EL3RST", 47),
    ("ELNRNG", 48),
    ("EUNATCH", 49),
    ("ENOCSI", 50),
    ("EL2HLT", 51),
    ("EBADE", 52),
    ("EBADR", 53),
    ("EXFULL", 54),
    ("ENOANO", 55),
    ("EBADRQC", 56),
    ("EBADSLT", 57),
    ("EBFONT", 59),
    ("ENOSTR", 60),
    ("ENODATA", 61),
    ("ETIME", 62),
    ("ENOSR", 63),
    ("ENONET", 64),
    ("ENOPKG", 65),
    ("EREMOTE", 66),
    ("ENOLINK", 67),
    ("EADV", 68),
    ("ESRMNT", 69),
    ("ECOMM", 70),
    ("EPROTO", 71),
    ("EMULTIHOP", 72),
    ("EDOTDOT", 73),
    ("EBADMSG", 74),
    ("EOVERFLOW", 75),
    ("ENOTUNIQ", 76),
    ("EBADFD", 77),
    ("EREMCHG", 78),
    ("ELIBACC", 79),
    ("ELIBBAD", 80),
    ("ELIBSCN", 81),
    ("ELIBMAX", 82),
    ("ELIBEXEC", 83),
    ("EILSEQ", 84),
    ("ERESTART", 85),
    ("ESTRPIPE", 86),
    ("EUSERS", 87),
    ("ENOTSOCK", 88),
    ("EDESTADDRREQ", 89),
    ("EMSGSIZE", 90),
    ("EPROTOTYPE", 91),
    ("ENOPROTOOPT", 92),
    ("EPROTONOSUPPORT", 93),
    ("ESOCKTNOSUPPORT", 94),
    ("EOPNOTSUPP", 95),
    ("EPFNOSUPPORT", 96),
    ("EAFNOSUPPORT", 97),
    ("EADDRINUSE", 98),
    ("EADDRNOTAVAIL", 99),
    ("ENETDOWN", 100),
    ("ENETUNREACH", 101),
    ("ENETRESET", 102),
    ("ECONNABORTED", 103),
    ("ECONNRESET", 104),
    ("ENOBUFS", 105),
    ("EISCONN", 106),
    ("ENOTCONN", 107),
    ("ESHUTDOWN", 108),
    ("ETOOMANYREFS", 109),
    ("ETIMEDOUT", 110),
    ("ECONNREFUSED", 111),
    ("EHOSTDOWN", 112),
    ("EHOSTUNREACH", 113),
    ("EALREADY", 114),
    ("EINPROGRESS", 115),
    ("ESTALE", 116),
    ("EUCLEAN", 117),
    ("ENOTNAM", 118),
    ("ENAVAIL", 119),
    ("EISNAM", 120),
    ("EREMOTEIO", 121),
    ("EDQUOT", 122),
    ("ENOMEDIUM", 123),
    ("EMEDIUMTYPE", 124),
    ("ECANCELED", 125),
    ("ENOKEY", 126),
    ("EKEYEXPIRED", 127),
    ("EKEYREVOKED", 128),
    ("EKEYREJECTED", 129),
    ("EOWNERDEAD", 130),
    ("ENOTRECOVERABLE", 131),
    ("ERFKILL", 132),
    ("EHWPOISON", 133),
    ("EFTYPE", 134),
    ("EWOULDBLOCK", 11),
    ("EDEADLOCK", 35),
];

/// The symbolic name of a positive errno value.
pub fn errno_name(value: i32) -> Option<&'static str> {
    ERRNOS.iter().find(|(_, v)| *v == value).map(|(n, _)| *n)
}

/// The value of a symbolic errno name.
pub fn errno_value(name: &str) -> Option<i32> {
    ERRNOS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// `open(2)` flags.
pub const OPEN_FLAGS: &[(&str, i64)] = &[
    ("O_RDONLY", 0),
    ("O_WRONLY", 1),
    ("O_RDWR", 2),
    ("O_CREAT", 0o100),
    ("O_EXCL", 0o200),
    ("O_NOCTTY", 0o400),
    ("O_TRUNC", 0o1000),
    ("O_APPEND", 0o2000),
    ("O_NONBLOCK", 0o4000),
    ("O_DSYNC", 0o10000),
    ("O_DIRECT", 0o40000),
    ("O_LARGEFILE", 0o100000),
    ("O_DIRECTORY", 0o200000),
    ("O_NOFOLLOW", 0o400000),
    ("O_NOATIME", 0o1000000),
    ("O_CLOEXEC", 0o2000000),
    ("O_PATH", 0o10000000),
];

/// `*at(2)` flags (`AT_*` in `include/uapi/linux/fcntl.h`).
pub const AT_FLAGS: &[(&str, i64)] = &[
    ("AT_SYMLINK_NOFOLLOW", 0x100),
    ("AT_REMOVEDIR", 0x200),
    ("AT_EACCESS", 0x200),
    ("AT_SYMLINK_FOLLOW", 0x400),
    ("AT_NO_AUTOMOUNT", 0x800),
    ("AT_EMPTY_PATH", 0x1000),
    ("AT_RECURSIVE", 0x8000),
];

/// `mount(2)` flags (`MS_*` in `include/uapi/linux/mount.h`).
pub const MOUNT_FLAGS: &[(&str, i64)] = &[
    ("MS_RDONLY", 1),
    ("MS_NOSUID", 2),
    ("MS_NODEV", 4),
    ("MS_NOEXEC", 8),
    ("MS_NOATIME", 1024),
];

/// `umount2(2)` flags (`MNT_*`).
pub const UMOUNT_FLAGS: &[(&str, i64)] = &[("MNT_FORCE", 1), ("MNT_DETACH", 2)];

/// The `dirfd` meaning "the current directory".
pub const AT_FDCWD: i32 = -100;

/// The flags mkdirat2() RFC v2 accepts (`VALID_MKDIRAT2_FLAGS`).
pub const MKDIRAT2_VALID_FLAGS: i64 = 0x100 | 0x800;

/// `fcntl(2)` commands the agent knows how to run (the integer ones).
pub const FCNTL_CMDS: &[(&str, i32)] = &[
    ("F_DUPFD", 0),
    ("F_GETFD", 1),
    ("F_SETFD", 2),
    ("F_GETFL", 3),
    ("F_SETFL", 4),
    ("F_DUPFD_CLOEXEC", 1030),
];

/// `FD_CLOEXEC`, the bit `F_GETFD` reports.
pub const FD_CLOEXEC: i64 = 1;

/// `setrlimit(2)` resources.
pub const RLIMITS: &[(&str, i32)] = &[
    ("RLIMIT_CPU", 0),
    ("RLIMIT_FSIZE", 1),
    ("RLIMIT_DATA", 2),
    ("RLIMIT_STACK", 3),
    ("RLIMIT_CORE", 4),
    ("RLIMIT_RSS", 5),
    ("RLIMIT_NPROC", 6),
    ("RLIMIT_NOFILE", 7),
    ("RLIMIT_MEMLOCK", 8),
    ("RLIMIT_AS", 9),
];

/// `RLIM_INFINITY`.
pub const RLIM_INFINITY: u64 = u64::MAX;

/// `open(2)` flags as strace prints them: the access mode by name, then
/// every other flag set, then what no name covers in hex
/// (`O_RDONLY|O_DIRECTORY`, `O_WRONLY|O_CREAT|0x40000000`).
pub fn open_flags_text(flags: i64) -> String {
    let access = match flags & 3 {
        0 => "O_RDONLY".to_string(),
        1 => "O_WRONLY".to_string(),
        2 => "O_RDWR".to_string(),
        _ => "0x3".to_string(),
    };
    let rest = bits_text(&OPEN_FLAGS[3..], flags & !3);
    if rest == "0" {
        access
    } else {
        format!("{access}|{rest}")
    }
}

/// Bit flags by name in `table`'s order (a bit two names share goes to
/// the first: `AT_REMOVEDIR` before `AT_EACCESS`), the rest in hex; `0`
/// for none.
pub fn bits_text(table: &[(&str, i64)], flags: i64) -> String {
    let mut left = flags;
    let mut parts: Vec<String> = Vec::new();
    for (name, bit) in table {
        if *bit != 0 && left & bit == *bit {
            parts.push((*name).to_string());
            left &= !bit;
        }
    }
    if left != 0 {
        parts.push(format!("{left:#x}"));
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join("|")
    }
}

/// A call's `flags` as strace prints them, for the calls whose flags are
/// a set gasbench knows; `None` for the others.
pub fn call_flags_text(call: &str, flags: i64) -> Option<String> {
    match call {
        "open" | "openat" => Some(open_flags_text(flags)),
        "unlinkat" | "mkdirat2" | "fstatat" => Some(bits_text(AT_FLAGS, flags)),
        _ => None,
    }
}

/// A file mode as strace prints it: `0o700`.
pub fn mode_text(mode: i64) -> String {
    format!("0o{mode:o}")
}

/// Look a name up in one of the tables above.
pub fn lookup<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_table_is_the_kernels() {
        assert_eq!(errno_value("EPERM"), Some(1));
        assert_eq!(errno_value("ENOTTY"), Some(25));
        assert_eq!(errno_value("ENXIO"), Some(6));
        assert_eq!(errno_value("EHWPOISON"), Some(133));
        assert_eq!(errno_name(14), Some("EFAULT"));
        assert_eq!(errno_name(11), Some("EAGAIN"));
        assert_eq!(errno_name(35), Some("EDEADLK"));
        assert_eq!(errno_name(0), None);
        // Every value from 1 to 133 has a name (the kernel's table is dense
        // except for 41 and 58, which were never assigned).
        for v in (1..=133).filter(|v| *v != 41 && *v != 58) {
            assert!(errno_name(v).is_some(), "{v}");
        }
    }

    #[test]
    fn flags_match_libc() {
        assert_eq!(lookup(OPEN_FLAGS, "O_CLOEXEC"), Some(libc_like::O_CLOEXEC));
        assert_eq!(
            lookup(OPEN_FLAGS, "O_DIRECTORY"),
            Some(libc_like::O_DIRECTORY)
        );
        assert_eq!(lookup(AT_FLAGS, "AT_NO_AUTOMOUNT"), Some(0x800));
        assert_eq!(MKDIRAT2_VALID_FLAGS, 0x900);
    }

    #[test]
    fn flags_read_as_strace_prints_them() {
        assert_eq!(open_flags_text(0x10000), "O_RDONLY|O_DIRECTORY");
        assert_eq!(open_flags_text(0), "O_RDONLY");
        assert_eq!(
            open_flags_text(0o1 | 0o100 | 0o1000 | 0o2000000),
            "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC"
        );
        assert_eq!(open_flags_text(2 | 0x4000_0000), "O_RDWR|0x40000000");
        assert_eq!(
            call_flags_text("unlinkat", 512).as_deref(),
            Some("AT_REMOVEDIR")
        );
        assert_eq!(
            call_flags_text("mkdirat2", 0x900).as_deref(),
            Some("AT_SYMLINK_NOFOLLOW|AT_NO_AUTOMOUNT")
        );
        assert_eq!(call_flags_text("mkdirat2", 0).as_deref(), Some("0"));
        assert_eq!(call_flags_text("mkdirat2", 0x1).as_deref(), Some("0x1"));
        assert_eq!(call_flags_text("ioctl:PING", 1), None);
        assert_eq!(mode_text(0o700), "0o700");
    }

    /// Values as glibc's x86-64 headers spell them, written out here so the
    /// abi crate stays free of a libc dependency.
    mod libc_like {
        pub const O_CLOEXEC: i64 = 0x80000;
        pub const O_DIRECTORY: i64 = 0x10000;
    }
}
