//! Reading a registry's answer on the sendfile upload path: the head with `httparse`, the
//! body as the head frames it.

use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;

use bytes::{Buf, Bytes, BytesMut};
use reqwest::ResponseBuilderExt;
use reqwest::header::{CONNECTION, CONTENT_LENGTH, HeaderMap, TRANSFER_ENCODING};
use tokio::net::TcpStream;
use url::Url;

/// A response head larger than this is not from a registry.
const MAX_HEAD: usize = 64 * 1024;
/// Response bodies are only read for error messages (which read 64 KiB at most).
const MAX_BODY: usize = 1024 * 1024;
pub(super) const READ_STEP: usize = 16 * 1024;

/// Reads what the socket has. `Some(0)` is end of stream, `None` nothing to read yet.
pub(super) fn read_some(stream: &TcpStream, buffer: &mut BytesMut) -> io::Result<Option<usize>> {
    buffer.reserve(READ_STEP);
    match stream.try_read_buf(buffer) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// `recv(2)` without waiting, asked of the kernel itself. tokio's `try_read` answers
/// "would block" without asking while its reactor has not yet seen the socket turn readable,
/// which is exactly the moment these checks run at.
pub(super) fn recv_now(
    stream: &TcpStream,
    buffer: &mut [u8],
    flags: libc::c_int,
) -> io::Result<usize> {
    // SAFETY: the descriptor is open (borrowed) and `buffer` is valid for `len` bytes.
    let read = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            flags | libc::MSG_DONTWAIT,
        )
    };
    if read < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(read as usize)
}

/// Waits for more bytes; `Ok(0)` at end of stream.
async fn read_more(stream: &TcpStream, buffer: &mut BytesMut) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        if let Some(n) = read_some(stream, buffer)? {
            return Ok(n);
        }
    }
}

pub(super) struct Head {
    status: u16,
    headers: HeaderMap,
    /// Bytes of the buffer the head takes.
    len: usize,
    /// 1xx: another head follows.
    pub(super) interim: bool,
    /// HTTP/1.1 without `Connection: close`.
    keep_alive: bool,
}

pub(super) fn parse_head(buffer: &[u8]) -> io::Result<Option<Head>> {
    let invalid = |why: String| io::Error::new(ErrorKind::InvalidData, why);
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut response = httparse::Response::new(&mut slots);
    let len = match response.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buffer.len() > MAX_HEAD => {
            return Err(invalid("the response head is too large".to_owned()));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(format!("invalid HTTP response: {e}"))),
    };
    let status = response.code.unwrap_or_default();
    let version_1_1 = response.version == Some(1);
    let mut headers = HeaderMap::new();
    for header in response.headers.iter() {
        let name = reqwest::header::HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|e| invalid(format!("invalid response header name: {e}")))?;
        let value = reqwest::header::HeaderValue::from_bytes(header.value)
            .map_err(|e| invalid(format!("invalid value of response header {name}: {e}")))?;
        headers.append(name, value);
    }
    let close = headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    });
    Ok(Some(Head {
        status,
        headers,
        len,
        interim: (100..200).contains(&status),
        keep_alive: version_1_1 && !close,
    }))
}

/// The answer, and whether the connection is left clean for another request.
pub(super) async fn read_response(
    stream: &TcpStream,
    mut received: BytesMut,
    url: &Url,
) -> io::Result<(reqwest::Response, bool)> {
    let head = loop {
        match parse_head(&received)? {
            Some(head) if head.interim => received.advance(head.len),
            Some(head) => {
                received.advance(head.len);
                break head;
            }
            None => {
                if read_more(stream, &mut received).await? == 0 {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the registry closed the connection without an answer",
                    ));
                }
            }
        }
    };
    let (body, complete) = read_body(stream, &head, received).await?;
    let reusable = head.keep_alive && complete;
    let mut builder = http::Response::builder()
        .status(head.status)
        .version(http::Version::HTTP_11)
        .url(url.clone());
    if let Some(headers) = builder.headers_mut() {
        *headers = head.headers;
    }
    let response = builder
        .body(body)
        .map_err(|e| io::Error::new(ErrorKind::InvalidData, format!("invalid response: {e}")))?;
    Ok((reqwest::Response::from(response), reusable))
}

/// The body as framed by the head, cut at [`MAX_BODY`]; true when exactly the body was read
/// (only a `Content-Length` body is told apart from what could follow it).
async fn read_body(
    stream: &TcpStream,
    head: &Head,
    mut received: BytesMut,
) -> io::Result<(Bytes, bool)> {
    if head.status == 204 || head.status == 304 {
        return Ok((Bytes::new(), received.is_empty()));
    }
    let chunked = head.headers.get_all(TRANSFER_ENCODING).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
    });
    if chunked {
        return Ok((read_chunked(stream, received).await?, false));
    }
    let length = head
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Without a length or chunks, HTTP/1.1 ends the body by closing the connection.
    let wanted = length.map_or(MAX_BODY, |n| n.min(MAX_BODY as u64) as usize);
    while received.len() < wanted {
        if read_more(stream, &mut received).await? == 0 {
            if length.is_some() {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the registry closed the connection in the middle of its answer",
                ));
            }
            break;
        }
    }
    let exact = length.is_some_and(|n| n as usize == wanted) && received.len() == wanted;
    received.truncate(wanted);
    Ok((received.freeze(), exact))
}

async fn read_chunked(stream: &TcpStream, mut received: BytesMut) -> io::Result<Bytes> {
    let mut body = BytesMut::new();
    loop {
        let (start, size) = match httparse::parse_chunk_size(&received) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => {
                if read_more(stream, &mut received).await? == 0 {
                    return Err(chunk_eof());
                }
                continue;
            }
            Err(_) => {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    "invalid chunk in the response body",
                ));
            }
        };
        // Trailers after the last chunk are of no interest.
        if size == 0 {
            return Ok(body.freeze());
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let take = size.min(MAX_BODY - body.len());
        let chunk_end = start.saturating_add(size).saturating_add(2);
        while received.len() < start + take {
            if read_more(stream, &mut received).await? == 0 {
                return Err(chunk_eof());
            }
        }
        body.extend_from_slice(&received[start..start + take]);
        if body.len() >= MAX_BODY {
            return Ok(body.freeze());
        }
        while received.len() < chunk_end {
            if read_more(stream, &mut received).await? == 0 {
                return Err(chunk_eof());
            }
        }
        received.advance(chunk_end);
    }
}

fn chunk_eof() -> io::Error {
    io::Error::new(
        ErrorKind::UnexpectedEof,
        "the registry closed the connection in the middle of a chunked answer",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_parsed_once_complete() {
        let text =
            b"HTTP/1.1 201 Created\r\nLocation: /v2/a/blobs/sha256:1\r\nContent-Length: 0\r\n\r\n";
        assert!(parse_head(&text[..20]).expect("partial is fine").is_none());
        let head = parse_head(text).expect("valid").expect("complete");
        assert_eq!(head.status, 201);
        assert_eq!(head.len, text.len());
        assert!(!head.interim);
        assert_eq!(head.headers["location"], "/v2/a/blobs/sha256:1");
        let interim = parse_head(b"HTTP/1.1 100 Continue\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert!(interim.interim);
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
