//! One keep-alive HTTP/1.1 connection to a registry, with as little as HTTP allows: the raw
//! clients' transport (no TLS, no chunked responses, no redirects); and a file sent into a socket
//! without a copy through user space.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

pub enum Body<'a> {
    None,
    Bytes(&'a [u8]),
    File(&'a Path, u64),
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    host: String,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(host: &str) -> Result<Conn> {
        let stream = TcpStream::connect(host).with_context(|| format!("connect to {host}"))?;
        stream.set_nodelay(true)?;
        let reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
        Ok(Conn {
            host: host.to_owned(),
            stream,
            reader,
        })
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Response> {
        let length = match body {
            Body::None => 0,
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File(_, size) => size,
        };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if method != "HEAD" && method != "GET" {
            head.push_str(&format!("Content-Length: {length}\r\n"));
        }
        head.push_str("\r\n");
        self.stream.write_all(head.as_bytes())?;
        match body {
            Body::None => {}
            Body::Bytes(bytes) => self.stream.write_all(bytes)?,
            Body::File(path, size) => self.send_file(path, size)?,
        }
        self.read_response(method == "HEAD")
            .with_context(|| format!("{method} {path}"))
    }

    fn send_file(&mut self, path: &Path, size: u64) -> Result<()> {
        send_file(&self.stream, path, size)
    }

    /// A GET whose body goes to `sink` as it arrives, never whole in memory (blobs). Returns the
    /// status and the headers; a body that is not 200's is read and dropped.
    pub fn get_streaming(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        sink: &mut dyn Write,
    ) -> Result<Response> {
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.stream.write_all(head.as_bytes())?;
        let response = self.read_head().with_context(|| format!("GET {path}"))?;
        let length = response.content_length(false)?;
        let copied = if response.status == 200 {
            std::io::copy(&mut (&mut self.reader).take(length), sink)?
        } else {
            std::io::copy(&mut (&mut self.reader).take(length), &mut std::io::sink())?
        };
        ensure!(copied == length, "GET {path}: connection closed mid-body");
        Ok(response)
    }

    fn read_head(&mut self) -> Result<Response> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .with_context(|| format!("bad status line {line:?}"))?
            .parse()?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            let (name, value) = trimmed.split_once(':').context("bad header line")?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            bail!("chunked responses are not expected from the registry");
        }
        Ok(response)
    }

    fn read_response(&mut self, head_request: bool) -> Result<Response> {
        let mut response = self.read_head()?;
        let length = response.content_length(head_request)?;
        let mut body = Vec::with_capacity(length as usize);
        (&mut self.reader).take(length).read_to_end(&mut body)?;
        ensure!(body.len() as u64 == length, "connection closed mid-body");
        response.body = body;
        Ok(response)
    }
}

impl Response {
    fn content_length(&self, head_request: bool) -> Result<u64> {
        Ok(match self.header("content-length") {
            Some(v) if !head_request => v.parse()?,
            _ => 0,
        })
    }
}

/// The first `size` bytes of the file at `path` into `socket` with sendfile(2): no copy through
/// user space. (`std::io::copy` from a file to a socket reads and writes 8 KiB at a time.)
pub fn send_file(socket: &impl AsRawFd, path: &Path, size: u64) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut offset: libc::off_t = 0;
    let mut remaining = size;
    while remaining > 0 {
        let count = remaining.min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the call (borrowed from `socket` and `file`), and
        // `offset` is a valid, exclusively borrowed off_t that the kernel updates.
        let sent =
            unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut offset, count) };
        if sent < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error).with_context(|| format!("sendfile {}", path.display()));
        }
        ensure!(sent > 0, "{} is shorter than {size} bytes", path.display());
        remaining -= sent as u64;
    }
    Ok(())
}
