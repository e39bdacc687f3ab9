//! Storage health: does a commit still reach a file that will be there after
//! a restart?
//!
//! Faults come from two places: SQLite's error codes (`SQLITE_FULL`,
//! `SQLITE_READONLY`, `SQLITE_IOERR*`, `SQLITE_CANTOPEN`) and a check of the
//! file's identity after each commit. An unlinked or replaced database file
//! still takes commits through the open descriptor, so SQLite reports success
//! for writes that are gone at the next restart: comparing the device and
//! inode of the path with those seen at open catches it for the price of two
//! `statx` calls (inode only, see `id_of`) per group commit.
//!
//! A fault is logged once, when it starts (and once when it clears), not per
//! request. While it lasts every write and `/readyz` answer 503.
//!
//! - `full`, `read_only`, `io`: cleared by the next commit that succeeds (for
//!   `full`, only once the volume has [`MIN_FREE_BYTES`] free again, so a tiny
//!   heartbeat that happens to fit does not make `/readyz` say 200 while
//!   notifications still fail).
//! - `gone` (the file or its directory was deleted or replaced): sticky until
//!   restart. Reopening at the path would answer 200 again, but every
//!   notification acknowledged before and not yet processed lives only in the
//!   deleted file this process still holds open and is lost at the next
//!   restart anyway; and a recreated directory may sit on a filesystem that
//!   does not persist (a volume that was unmounted). Refusing writes keeps
//!   Alertmanager retrying (it holds the notifications) and says why; a restart
//!   opens whatever is at the path then.

use super::StoreError;
use crate::metrics::StoreMetrics;
use rusqlite::ErrorCode;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Below this much free space on the database's volume `/readyz` answers 503
/// and a `full` fault does not clear: room for a few maximal notifications
/// (`ingest.max_body_bytes` defaults to 1 MiB) and the checkpoint that moves
/// them into the database file.
pub const MIN_FREE_BYTES: u64 = 4 << 20;

/// What is wrong with the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The database file or its directory was deleted or replaced.
    Gone,
    /// No space left (or the database hit its page limit).
    Full,
    /// The file or filesystem refuses writes.
    ReadOnly,
    /// Any other I/O error from the disk.
    Io,
    /// The database server (PostgreSQL) cannot be reached, is shutting down,
    /// or refuses writes (a standby during a failover).
    Unreachable,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Gone => "gone",
            Fault::Full => "full",
            Fault::ReadOnly => "read_only",
            Fault::Io => "io",
            Fault::Unreachable => "unreachable",
        }
    }

    /// The storage fault behind a SQLite error, if it is one.
    pub fn of(e: &rusqlite::Error) -> Option<Fault> {
        let rusqlite::Error::SqliteFailure(f, _) = e else {
            return None;
        };
        match f.code {
            ErrorCode::DiskFull => Some(Fault::Full),
            // SQLITE_READONLY_DBMOVED: SQLite noticed the file was moved or unlinked.
            ErrorCode::ReadOnly if f.extended_code == rusqlite::ffi::SQLITE_READONLY_DBMOVED => {
                Some(Fault::Gone)
            }
            ErrorCode::ReadOnly => Some(Fault::ReadOnly),
            ErrorCode::SystemIoFailure | ErrorCode::CannotOpen => Some(Fault::Io),
            _ => None,
        }
    }
}

/// The current fault, shared by the writer thread (which sets and clears it)
/// and the metrics.
pub struct Health {
    current: Mutex<Option<(Fault, String)>>,
    /// Counts the faults raised so far: a success only clears a fault raised
    /// before the operation began ([`Health::clear_since`]).
    raised: std::sync::atomic::AtomicU64,
    metrics: StoreMetrics,
}

impl Health {
    pub fn new(metrics: StoreMetrics) -> Self {
        metrics.writable.set(1);
        Self {
            current: Mutex::new(None),
            raised: std::sync::atomic::AtomicU64::new(0),
            metrics,
        }
    }

    /// The fault in force, if any.
    pub fn current(&self) -> Option<(Fault, String)> {
        self.current.lock().map(|c| c.clone()).unwrap_or(None)
    }

    /// Records a fault; logs when it starts or changes kind. `gone` stays.
    pub fn fail(&self, fault: Fault, message: &str) {
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        match current.as_ref() {
            Some((Fault::Gone, _)) => return,
            Some((f, _)) if *f == fault => return,
            _ => {}
        }
        let remedy = match fault {
            Fault::Gone => "writes are refused until the router is restarted",
            _ => "writes are refused until it clears",
        };
        tracing::error!(
            fault = fault.as_str(),
            error = %message,
            "Storage fault: {remedy}; POST /api/v1/alerts and /readyz answer 503"
        );
        *current = Some((fault, message.to_owned()));
        self.raised
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.metrics.writable.set(0);
    }

    /// A mark to take before an operation, for [`Health::clear_since`].
    pub fn mark(&self) -> u64 {
        self.raised.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Clears the fault after an operation that began at `mark` succeeded,
    /// unless the fault was raised while it ran: an operation that started
    /// before an outage and finished just inside it proves nothing about
    /// the outage being over (the fault would flap at its start).
    pub fn clear_since(&self, mark: u64) {
        if self.raised.load(std::sync::atomic::Ordering::SeqCst) == mark {
            self.clear();
        }
    }

    /// Clears a fault that is not sticky; logs when it does.
    pub fn clear(&self) {
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        if let Some((fault, _)) = current.as_ref() {
            if *fault == Fault::Gone {
                return;
            }
            tracing::info!(
                fault = fault.as_str(),
                "Storage fault cleared: the store commits writes again"
            );
            *current = None;
            self.metrics.writable.set(1);
        }
    }

    /// The error callers get while `fault` lasts.
    pub fn error(fault: Fault, message: &str) -> StoreError {
        StoreError::Storage {
            fault,
            message: message.to_owned(),
        }
    }
}

/// Device and inode of a file.
type Id = (u64, u64);

/// The device and inode `path` names now.
///
/// On Linux this asks `statx` for the inode number only. A stat that asks
/// for timestamps (as `std::fs::metadata` does) marks them as seen, and on
/// kernels with fine-grained timestamps (Linux 6.13 and later) the next
/// write to the file then takes a new modification time, which dirties the
/// inode: the writer's next `fdatasync` of the WAL writes the inode too, a
/// second device write per group commit (see BENCHMARKS.md).
fn id_of(path: &Path) -> std::io::Result<Id> {
    #[cfg(target_os = "linux")]
    if let Some(x) = statx_only(path, rustix::fs::StatxFlags::INO) {
        return x.map(|x| {
            (
                rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor),
                x.stx_ino,
            )
        });
    }
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// The size of the file at `path`, 0 when it cannot be read. Like `id_of`,
/// it does not ask for timestamps.
pub fn size_of(path: &Path) -> u64 {
    #[cfg(target_os = "linux")]
    if let Some(x) = statx_only(path, rustix::fs::StatxFlags::SIZE) {
        return x.map_or(0, |x| x.stx_size);
    }
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// `statx` of `path` asking for `mask` only; `None` on a kernel older than
/// 4.11, which has no statx (the caller falls back to a full stat).
#[cfg(target_os = "linux")]
fn statx_only(
    path: &Path,
    mask: rustix::fs::StatxFlags,
) -> Option<std::io::Result<rustix::fs::Statx>> {
    use rustix::fs::{statx, AtFlags, CWD};
    match statx(CWD, path, AtFlags::empty(), mask) {
        Err(rustix::io::Errno::NOSYS) => None,
        result => Some(result.map_err(Into::into)),
    }
}

/// The identity of the database file and its WAL as opened.
pub struct FileIdentity {
    db_path: PathBuf,
    wal_path: PathBuf,
    db: Id,
    wal: Option<Id>,
}

impl FileIdentity {
    /// Remembers what `path` (and its `-wal`) are now.
    pub fn capture(path: &Path) -> std::io::Result<Self> {
        let wal_path = wal_path(path);
        Ok(Self {
            db: id_of(path)?,
            wal: id_of(&wal_path).ok(),
            db_path: path.to_owned(),
            wal_path,
        })
    }

    /// Err when the path no longer names the file this process writes to.
    pub fn check(&mut self) -> Result<(), String> {
        match id_of(&self.db_path) {
            Ok(id) if id == self.db => {}
            Ok(_) => return Err(format!("the database file {} was replaced while the router was running: commits go to the old file, which is gone at the next restart", self.db_path.display())),
            Err(e) => return Err(format!("the database file {} is gone ({e}) while the router was running: commits would not survive a restart", self.db_path.display())),
        }
        match (id_of(&self.wal_path), self.wal) {
            (Ok(id), Some(seen)) if id == seen => Ok(()),
            (Ok(id), None) => {
                self.wal = Some(id);
                Ok(())
            }
            (Ok(_), Some(_)) => Err(format!(
                "the write-ahead log {} was replaced while the router was running",
                self.wal_path.display()
            )),
            (Err(e), _) => Err(format!(
                "the write-ahead log {} is gone ({e}) while the router was running: commits would not survive a restart",
                self.wal_path.display()
            )),
        }
    }
}

/// `<db>-wal`.
pub fn wal_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// Bytes available to unprivileged writers on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_check_sees_the_database_or_its_wal_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        std::fs::write(&db, b"db").unwrap();
        std::fs::write(wal_path(&db), b"wal").unwrap();
        let mut identity = FileIdentity::capture(&db).unwrap();
        // Writes to the same files keep it.
        std::fs::write(&db, b"db, longer").unwrap();
        identity.check().unwrap();
        // The same inode as std's stat names it.
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&db).unwrap();
        assert_eq!(id_of(&db).unwrap(), (m.dev(), m.ino()));
        assert_eq!(size_of(&db), 10);
        assert_eq!(size_of(&dir.path().join("absent")), 0);

        // A new WAL at the path (a rename over it): replaced.
        let other = dir.path().join("other");
        std::fs::write(&other, b"wal").unwrap();
        std::fs::rename(&other, wal_path(&db)).unwrap();
        let e = identity.check().unwrap_err();
        assert!(
            e.contains("write-ahead log") && e.contains("replaced"),
            "{e}"
        );

        // A new database file at the path: replaced.
        let mut identity = FileIdentity::capture(&db).unwrap();
        std::fs::write(&other, b"db").unwrap();
        std::fs::rename(&other, &db).unwrap();
        let e = identity.check().unwrap_err();
        assert!(e.contains("r.db") && e.contains("replaced"), "{e}");
        std::fs::remove_file(&db).unwrap();
        let e = identity.check().unwrap_err();
        assert!(e.contains("is gone"), "{e}");
    }
}
