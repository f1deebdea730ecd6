//! The `docker load` baseline: one pass over an image archive that hashes every blob with `sha2`
//! and writes it to disk, each file fsynced, as a store that verifies digests must at least do.
//!
//! Usage: load-baseline ARCHIVE OUTDIR (OUTDIR must not exist; put it on the daemon's disk)

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [archive, out] = args.as_slice() else {
        bail!("usage: load-baseline ARCHIVE OUTDIR");
    };
    let out = PathBuf::from(out);
    ensure!(!out.exists(), "{} exists already", out.display());
    std::fs::create_dir_all(out.join("blobs/sha256"))?;
    let file = std::fs::File::open(archive).with_context(|| format!("open {archive}"))?;
    let mut tar = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
    let mut buffer = vec![0u8; 1 << 20];
    let (mut blobs, mut bytes) = (0u64, 0u64);
    for (n, entry) in tar.entries()?.enumerate() {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.to_string_lossy().into_owned();
        let expected = name.strip_prefix("blobs/sha256/");
        let temp = out.join(format!("ingest-{n}"));
        let mut target = std::fs::File::create(&temp)?;
        let mut hasher = Sha256::new();
        loop {
            let read = entry.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            target.write_all(&buffer[..read])?;
            bytes += read as u64;
        }
        target.sync_all()?;
        let hex = hex::encode(hasher.finalize());
        let destination = match expected {
            Some(expected) => {
                ensure!(expected == hex, "{name} hashes to sha256:{hex}");
                blobs += 1;
                out.join("blobs/sha256").join(&hex)
            }
            None => out.join(name.replace('/', "_")),
        };
        std::fs::rename(&temp, destination)?;
    }
    println!("{{\"blobs\":{blobs},\"bytes\":{bytes}}}");
    Ok(())
}
