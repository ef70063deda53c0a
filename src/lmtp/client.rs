//! A small LMTP client: what the MTA does, for `embargod demo`, the tests
//! and the benchmarks. One call sends one message and returns the reply for
//! each recipient.

use std::io;

use smtp_proto::response::parser::ResponseReceiver;
use smtp_proto::Response;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::ListenAddr;

/// One reply: code, and the text with its enhanced status code
/// ("5.1.1 no such list").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply code (RFC 5321 §4.2), e.g. 250.
    pub code: u16,
    /// The text after the code, lines joined.
    pub text: String,
}

impl From<Response<String>> for Reply {
    fn from(response: Response<String>) -> Reply {
        let [a, b, c] = response.esc;
        let text = if a == 0 {
            response.message
        } else {
            format!("{a}.{b}.{c} {}", response.message)
        };
        Reply {
            code: response.code,
            text,
        }
    }
}

/// An open LMTP session.
pub struct Client<S> {
    stream: S,
    responses: ResponseReceiver,
    buf: Vec<u8>,
    pending: Vec<u8>,
}

/// Connects to `address` and says LHLO.
pub async fn connect(address: &ListenAddr) -> io::Result<Client<Box<dyn Stream>>> {
    let stream: Box<dyn Stream> = match address {
        ListenAddr::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            // Commands and replies alternate: no Nagle delays.
            stream.set_nodelay(true)?;
            Box::new(stream)
        }
        ListenAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
    };
    over(stream).await
}

/// An LMTP session over `stream`, already open: reads the greeting and
/// says LHLO.
pub async fn over(stream: Box<dyn Stream>) -> io::Result<Client<Box<dyn Stream>>> {
    let mut client = Client {
        stream,
        responses: ResponseReceiver::default(),
        buf: vec![0; 8192],
        pending: Vec::new(),
    };
    expect(client.reply().await?, 220)?;
    client
        .command("LHLO embargod-client")
        .await
        .and_then(|r| expect(r, 250))?;
    Ok(client)
}

/// Any byte stream the client can talk over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

fn expect(reply: Reply, code: u16) -> io::Result<Reply> {
    if reply.code == code {
        Ok(reply)
    } else {
        Err(io::Error::other(format!(
            "expected {code}, got {} {}",
            reply.code, reply.text
        )))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> io::Result<Reply> {
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await?;
        self.reply().await
    }

    /// Reads the next (possibly multi-line) reply.
    pub async fn reply(&mut self) -> io::Result<Reply> {
        loop {
            if !self.pending.is_empty() {
                let pending = std::mem::take(&mut self.pending);
                let mut iter = pending.iter();
                match self.responses.parse(&mut iter) {
                    Ok(response) => {
                        self.pending = iter.as_slice().to_vec();
                        self.responses.reset();
                        return Ok(response.into());
                    }
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => {}
                    Err(e) => return Err(io::Error::other(format!("bad reply: {e:?}"))),
                }
            }
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.pending.extend_from_slice(&self.buf[..n]);
        }
    }

    /// One transaction: MAIL, RCPT for each recipient, DATA. Returns the
    /// reply for each recipient: the RCPT reply if it was refused, the
    /// post-DATA reply otherwise.
    pub async fn send(
        &mut self,
        from: &str,
        rcpts: &[&str],
        message: &[u8],
    ) -> io::Result<Vec<Reply>> {
        expect(self.command(&format!("MAIL FROM:<{from}>")).await?, 250)?;
        let mut replies: Vec<Option<Reply>> = Vec::new();
        for rcpt in rcpts {
            let reply = self.command(&format!("RCPT TO:<{rcpt}>")).await?;
            replies.push((reply.code != 250).then_some(reply));
        }
        if replies.iter().all(Option::is_some) {
            self.command("RSET").await?;
            return Ok(replies.into_iter().flatten().collect());
        }
        expect(self.command("DATA").await?, 354)?;
        let mut data = dot_stuff(message);
        data.extend_from_slice(b".\r\n");
        self.stream.write_all(&data).await?;
        let mut out = Vec::new();
        for reply in replies {
            out.push(match reply {
                Some(refused) => refused,
                None => self.reply().await?,
            });
        }
        Ok(out)
    }

    /// Ends the session (QUIT) and waits for the server's reply.
    pub async fn quit(mut self) -> io::Result<()> {
        self.command("QUIT").await.map(|_| ())
    }
}

/// CRLF line ends and a doubled leading dot on every line (RFC 5321
/// §4.5.2); ends with CRLF.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let normalized = crate::mime::inbound::crlf(message);
    let mut out = Vec::with_capacity(normalized.len() + 64);
    let mut line_start = true;
    for &byte in &normalized {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Connects, sends one message, quits.
pub async fn send_one(
    address: &ListenAddr,
    from: &str,
    rcpts: &[&str],
    message: &[u8],
) -> io::Result<Vec<Reply>> {
    let mut client = connect(address).await?;
    let replies = client.send(from, rcpts, message).await?;
    client.quit().await?;
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_dots_are_doubled() {
        assert_eq!(dot_stuff(b".a\n..b\nc."), b"..a\r\n...b\r\nc.\r\n");
    }
}
