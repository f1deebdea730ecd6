//! The `docker save` client's floor: an Engine API server that does nothing but send one
//! finished archive. It answers `/_ping` (the CLI's version negotiation) and any
//! `GET …/images/get` or `GET …/images/{name}/get` with the whole ARCHIVE, sent with
//! sendfile(2) under a Content-Length, the cheapest framing for the client to read. What the
//! docker CLI then takes to write the archive to its file is the least any daemon's
//! `docker save` through that CLI can take on this machine.
//!
//! Usage: archive-server SOCKET ARCHIVE
//!   SOCKET   the unix socket to listen on (replaced if it exists)
//!   ARCHIVE  the tar to send

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hoist_bench::http::send_file;

/// The API version the CLI is told, so that it talks as to moby 28.2.
const API_VERSION: &str = "1.50";

/// A request's head past this is not a docker CLI's.
const HEAD_MAX: usize = 64 * 1024;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, archive] = args.as_slice() else {
        bail!("usage: archive-server SOCKET ARCHIVE");
    };
    let archive = PathBuf::from(archive);
    std::fs::metadata(&archive).with_context(|| format!("reading {}", archive.display()))?;
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).with_context(|| format!("binding {socket}"))?;
    for stream in listener.incoming() {
        let stream = stream.context("accepting a connection")?;
        let archive = archive.clone();
        std::thread::spawn(move || {
            if let Err(error) = serve(stream, &archive) {
                eprintln!("archive-server: {error:#}");
            }
        });
    }
    Ok(())
}

/// Requests on one keep-alive connection until the client closes it.
fn serve(stream: UnixStream, archive: &Path) -> Result<()> {
    // The same send buffer hoistd asks for on its unix socket, so that the socket between the
    // two processes is the same.
    set_send_buffer(&stream, 1 << 20)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some((method, target)) = read_head(&mut reader)? {
        let path = target.split('?').next().unwrap_or_default();
        if path.ends_with("/_ping") {
            let body = if method == "HEAD" { "" } else { "OK" };
            respond(&mut writer, 200, "text/plain; charset=utf-8", body)?;
        } else if method == "GET" && path.ends_with("/get") && path.contains("/images/") {
            let size = std::fs::metadata(archive)?.len();
            write!(
                writer,
                "HTTP/1.1 200 OK\r\nApi-Version: {API_VERSION}\r\nContent-Type: application/x-tar\r\n\
                 Content-Length: {size}\r\n\r\n"
            )?;
            send_file(&writer, archive, size)?;
        } else {
            let body = format!("{{\"message\":\"archive-server serves no {method} {path}\"}}\n");
            respond(&mut writer, 404, "application/json", &body)?;
        }
    }
    Ok(())
}

/// The request line of the next request, its headers read past; `None` once the client closed.
fn read_head(reader: &mut BufReader<UnixStream>) -> Result<Option<(String, String)>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        bail!("not an HTTP request line: {line:?}");
    };
    let request = (method.to_owned(), target.to_owned());
    let mut read = line.len();
    loop {
        line.clear();
        read += reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            return Ok(Some(request));
        }
        if read > HEAD_MAX {
            bail!("a request head of over {HEAD_MAX} bytes");
        }
    }
}

fn respond(writer: &mut UnixStream, status: u16, content_type: &str, body: &str) -> Result<()> {
    let reason = if status == 200 { "OK" } else { "Not Found" };
    write!(
        writer,
        "HTTP/1.1 {status} {reason}\r\nApi-Version: {API_VERSION}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

fn set_send_buffer(stream: &UnixStream, bytes: libc::c_int) -> Result<()> {
    // SAFETY: the descriptor is the stream's own and open for the call; the option value is a
    // c_int that lives across the call, and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setting SO_SNDBUF");
    }
    Ok(())
}
