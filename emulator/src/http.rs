//! A deliberately small HTTP/1.1 server side: one request per connection, `Connection: close`
//! on every answer. Hand-written rather than hyper so that fault injection can do what a real
//! network does to a client (drop, reset, stall half-way) at exactly the byte it wants.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Headers larger than this are refused with 431, as a real server would.
const MAX_HEAD: usize = 64 * 1024;
/// Request bodies larger than this are refused with 413.
const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// One query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_deref()?.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The bearer token, if the Authorization header is exactly `Bearer <token>`.
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ') {
            Some(token)
        } else {
            None
        }
    }
}

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed or reset before a full request arrived; nothing to answer.
    Closed,
    /// A malformed request: answer with this status and message.
    Bad(u16, &'static str),
}

pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Bad(431, "request header fields too large"));
        }
        let mut chunk = [0u8; 4096];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| ReadError::Closed)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| ReadError::Bad(400, "request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(ReadError::Bad(400, "malformed request line")),
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(ReadError::Bad(505, "HTTP version not supported"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or(ReadError::Bad(400, "malformed header line"))?;
        if k.is_empty() || k.contains(' ') {
            return Err(ReadError::Bad(400, "malformed header name"));
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    let mut req = Request {
        method: method.to_string(),
        path,
        query,
        headers,
        body: Vec::new(),
    };
    if req.header("transfer-encoding").is_some() {
        return Err(ReadError::Bad(
            411,
            "chunked request bodies are not accepted",
        ));
    }
    let len = match req.header("content-length") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ReadError::Bad(400, "invalid Content-Length"))?,
    };
    if len > MAX_BODY {
        return Err(ReadError::Bad(413, "request body too large"));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; (len - body.len()).min(64 * 1024)];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| ReadError::Closed)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    req.body = body;
    Ok(req)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                // RFC 7591 §3.2.1: responses carrying credentials must not be cached.
                ("Cache-Control".into(), "no-store".into()),
                ("Pragma".into(), "no-cache".into()),
            ],
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Status line and headers, with the framing headers this server always sets.
    pub fn head_bytes(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }
}

pub async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    resp: &Response,
) -> std::io::Result<()> {
    let mut bytes = resp.head_bytes();
    bytes.extend_from_slice(&resp.body);
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    stream.shutdown().await
}

/// Writes the head and the first half of the body, then never finishes: a stalled upstream.
pub async fn write_stalled<S: AsyncWrite + Unpin>(stream: &mut S, resp: &Response) {
    let mut bytes = resp.head_bytes();
    bytes.extend_from_slice(&resp.body[..resp.body.len() / 2]);
    if stream.write_all(&bytes).await.is_ok() && stream.flush().await.is_ok() {
        // Hold the connection open far longer than any sane client timeout.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        425 => "Too Early",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_a_request_with_body() {
        let raw = b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nAuthorization: Bearer t0k\r\n\r\n{}";
        let mut s: &[u8] = raw;
        let req = read_request(&mut s).await.unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/a");
        assert_eq!(req.query.as_deref(), Some("b=1"));
        assert_eq!(req.body, b"{}");
        assert_eq!(req.bearer(), Some("t0k"));
    }

    #[tokio::test]
    async fn refuses_chunked_bodies() {
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let mut s: &[u8] = raw;
        assert!(matches!(
            read_request(&mut s).await,
            Err(ReadError::Bad(411, _))
        ));
    }

    #[test]
    fn bearer_requires_the_scheme() {
        let req = Request {
            method: "GET".into(),
            path: "/".into(),
            query: None,
            headers: vec![("Authorization".into(), "Basic abc".into())],
            body: vec![],
        };
        assert_eq!(req.bearer(), None);
    }
}
