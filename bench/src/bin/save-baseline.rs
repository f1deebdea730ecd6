//! The `docker save` baseline: writes the tar hoistd's save produces for an image (directories
//! `blobs/` and `blobs/sha256/`, every blob in digest order, then `index.json`, `manifest.json`
//! and `oci-layout`) straight from the blob files to the output file, 1 MiB at a time, and makes it durable as the docker CLI's `save -o` does: a temporary file beside
//! the output, fsync, rename. With `--verify`, each blob is also hashed with sha256 as it is
//! copied (what hoistd's check of stored blobs adds).
//!
//! Usage: save-baseline [--verify] LAYOUT BLOBS OUT
//!   LAYOUT  the image's OCI layout: its blobs/sha256/ lists the blobs, its index.json,
//!           manifest.json and oci-layout are the archive's metadata
//!   BLOBS   the directory the blob files are read from (the daemon's blobs/sha256/, so that
//!           both read the same files from the same page cache)
//!   OUT     the archive to write (put it where the CLI's output goes)

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let verify = args.first().is_some_and(|a| a == "--verify");
    if verify {
        args.remove(0);
    }
    let [layout, blobs, out] = args.as_slice() else {
        bail!("usage: save-baseline [--verify] LAYOUT BLOBS OUT");
    };
    let (layout, blobs, out) = (Path::new(layout), Path::new(blobs), PathBuf::from(out));
    let mut digests: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .with_context(|| format!("listing {}/blobs/sha256", layout.display()))?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<_>>()?;
    digests.sort();

    let name = out
        .file_name()
        .context("OUT has no file name")?
        .to_string_lossy();
    let temp = out.with_file_name(format!(".tmp-{name}"));
    let mut file = File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
    for dir in ["blobs/", "blobs/sha256/"] {
        file.write_all(header(dir, tar::EntryType::Directory, 0, 0o755)?.as_bytes())?;
    }
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    for hex in &digests {
        let path = blobs.join(hex);
        let mut blob = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let size = blob.metadata()?.len();
        let name = format!("blobs/sha256/{hex}");
        file.write_all(header(&name, tar::EntryType::Regular, size, 0o644)?.as_bytes())?;
        let mut hasher = verify.then(Sha256::new);
        let mut copied = 0u64;
        loop {
            let n = blob.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            if let Some(hasher) = &mut hasher {
                hasher.update(&buffer[..n]);
            }
            file.write_all(&buffer[..n])?;
            copied += n as u64;
        }
        ensure!(
            copied == size,
            "{} changed while it was copied",
            path.display()
        );
        if let Some(hasher) = hasher {
            let actual = hex::encode(hasher.finalize());
            ensure!(
                &actual == hex,
                "{} hashes to sha256:{actual}",
                path.display()
            );
        }
        file.write_all(padding(size))?;
        bytes += size;
    }
    for metadata in ["index.json", "manifest.json", "oci-layout"] {
        let content = std::fs::read(layout.join(metadata))?;
        let size = content.len() as u64;
        file.write_all(header(metadata, tar::EntryType::Regular, size, 0o644)?.as_bytes())?;
        file.write_all(&content)?;
        file.write_all(padding(size))?;
    }
    file.write_all(&[0u8; 1024])?; // the end-of-archive blocks
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, &out)?;
    println!("{{\"blobs\":{},\"bytes\":{bytes}}}", digests.len());
    Ok(())
}

/// The zeros that fill `size` bytes of contents up to the next 512-byte block.
fn padding(size: u64) -> &'static [u8] {
    const ZEROS: [u8; 512] = [0; 512];
    &ZEROS[..((512 - size % 512) % 512) as usize]
}

fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_cksum();
    Ok(header)
}
