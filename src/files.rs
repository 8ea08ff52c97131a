//! Writing a file so that a reader (Envoy watching its config, `kubectl` reading manifests) or a
//! crash never sees half of it.
//!
//! The file gets the mode `std::fs::write` would give a new file: 0666 less the process's
//! umask. That needs no call to learn the umask: the temporary file is created with mode 0666
//! and the kernel applies the umask on creation, as it does for `std::fs::write` (`tempfile`'s
//! own default, 0600, would make manifests and configs unreadable to anyone else). A fixed 0644
//! would ignore a stricter umask the user chose; copying an existing file's mode would differ
//! between the first write and the next.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename. The
/// file gets the usual mode (0666 less the umask), like `std::fs::write`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".sticky-canary-").suffix(".tmp");
    // tempfile creates 0600 files; a rendered manifest is as readable as `std::fs::write` makes it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut temp = builder.tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn replaces_the_file_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.json"]);
    }

    #[test]
    fn the_mode_is_the_one_std_fs_write_gives() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours.yaml");
        let theirs = dir.path().join("theirs.yaml");
        write_atomically(&ours, b"x").unwrap();
        std::fs::write(&theirs, b"x").unwrap();
        // Not tempfile's private 0600: what std::fs::write makes under the same umask.
        assert_eq!(mode(&ours), mode(&theirs), "{:o} vs {:o}", mode(&ours), mode(&theirs));
    }
}
