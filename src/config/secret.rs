//! Reading `*_file` secrets: the one function every `*_file` setting goes through
//! ([`read_secret_file`]), for targets' `bearer_token_file` and receivers' `secret_file` and
//! `password_file`.
//!
//! A secret file is read only when it is a regular file, and at most [`MAX_SECRET_FILE_BYTES`] of
//! it: `secret_file: /dev/zero` used to be read without bound (1 GB in 5 s) and a FIFO hung the
//! start-up (and `tocsin check`) until something wrote to it.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest secret file accepted: 64 KiB. Tokens, passwords and HMAC keys are at most a few
/// hundred bytes; a larger file is a wrong path (a log, a device), not a secret.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

/// Occurs when a `*_file` secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file does not exist or cannot be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The path is a FIFO, a device, a socket or a directory.
    #[error("{path} is {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    /// The file is larger than [`MAX_SECRET_FILE_BYTES`].
    #[error("{path} is larger than the limit of {limit} bytes for a secret file")]
    TooLarge { path: PathBuf, limit: u64 },
    /// The file is not UTF-8 text.
    #[error("{path} is not utf-8 text")]
    NotText { path: PathBuf },
}

/// Reads a secret file (a regular file of at most [`MAX_SECRET_FILE_BYTES`]), trailing newlines
/// removed. The file type is checked before opening (opening a FIFO for reading blocks until a
/// writer comes) and again on the opened file.
pub fn read_secret_file(path: &Path) -> Result<String, SecretFileError> {
    let io = |source| SecretFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    check_regular(path, &std::fs::metadata(path).map_err(io)?)?;
    let file = std::fs::File::open(path).map_err(io)?;
    check_regular(path, &file.metadata().map_err(io)?)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(SecretFileError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_SECRET_FILE_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| SecretFileError::NotText {
        path: path.to_path_buf(),
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

fn check_regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), SecretFileError> {
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(());
    }
    let kind = if ft.is_dir() {
        "a directory"
    } else {
        file_kind(&ft)
    };
    Err(SecretFileError::NotRegular {
        path: path.to_path_buf(),
        kind,
    })
}

#[cfg(unix)]
fn file_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "a fifo"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn file_kind(_: &std::fs::FileType) -> &'static str {
    "not a regular file"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "s3cret\n").unwrap();
        assert_eq!(read_secret_file(&p).unwrap(), "s3cret");
    }

    #[test]
    fn refuses_missing_files_devices_directories_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = read_secret_file(&missing).unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("missing"), "{e}");
        let e = read_secret_file(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory, not a regular file"), "{e}");
        // read without bound before: 1 GB in 5 s
        let e = read_secret_file(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/dev/zero is a device"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_SECRET_FILE_BYTES as usize + 1]).unwrap();
        let e = read_secret_file(&big).unwrap_err().to_string();
        assert!(e.contains("larger than the limit of 65536 bytes"), "{e}");
        std::fs::write(&big, vec![b'x'; MAX_SECRET_FILE_BYTES as usize]).unwrap();
        assert!(read_secret_file(&big).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_fifo_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        // before: blocked in open until a writer came
        let e = read_secret_file(&fifo).unwrap_err().to_string();
        assert!(e.contains("is a fifo, not a regular file"), "{e}");
    }
}
