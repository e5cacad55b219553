//! A response as the download reads it: its headers, and its body one piece at a time on the
//! thread that sent the request, each piece lent where it lies or copied out by [`Read`].

use std::io::{self, Read};
use std::marker::PhantomData;

use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};

use super::{Client, Error, Via};
use crate::conntime::Setup;

/// Response headers, and the body as a blocking [`Read`] on the thread that sent the request.
pub(crate) struct Response {
    pub(super) inner: reqwest::Response,
    pub(super) client: Client,
    pub(super) via: Via,
    /// The set-up of the connections this request opened (see [`crate::conntime`]).
    pub(super) setup: Option<Setup>,
    /// With [`super::RequestBuilder::record_hops`] and a redirect: every request of the chain.
    pub(super) hops: Vec<crate::trace::Exchange>,
    /// The piece of the body in memory, not yet read.
    pub(super) current: bytes::Bytes,
    pub(super) not_send: PhantomData<*const ()>,
}

impl Response {
    pub(crate) fn status(&self) -> StatusCode {
        self.inner.status()
    }

    pub(crate) fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The HTTP version of the response.
    pub(crate) fn version(&self) -> reqwest::Version {
        self.inner.version()
    }

    /// The set-up of the connections this request opened and waited for (one per redirect hop
    /// that needed one); `None` when every hop reused a connection.
    pub(crate) fn setup(&self) -> Option<Setup> {
        self.setup
    }

    /// With [`super::RequestBuilder::record_hops`], each request of the redirect chain in
    /// order, this one last (its body not yet read); empty when there was no redirect.
    pub(crate) fn take_hops(&mut self) -> Vec<crate::trace::Exchange> {
        std::mem::take(&mut self.hops)
    }

    /// The final URL, after redirects.
    pub(crate) fn url(&self) -> &Url {
        self.inner.url()
    }

    /// Body bytes already in memory (reading them will not wait), to be written from where
    /// they lie.
    pub(crate) fn in_memory(&self) -> &[u8] {
        &self.current
    }

    /// Drops the first `n` of them, once written.
    pub(crate) fn consume(&mut self, n: usize) {
        let n = n.min(self.current.len());
        bytes::Buf::advance(&mut self.current, n);
    }

    /// Waits for more of the body unless some is in memory; `false` at its end. An empty piece
    /// (an HTTP/2 DATA frame may carry nothing) is not the end.
    pub(crate) fn fill(&mut self) -> io::Result<bool> {
        while self.current.is_empty() {
            let Response {
                inner, client, via, ..
            } = self;
            let next = client.with(*via, |runtime, _| client.wait(runtime, || inner.chunk()));
            match next {
                Ok(Some(chunk)) => self.current = chunk,
                Ok(None) => return Ok(false),
                Err(Error::Http(e)) => return Err(io::Error::other(e)),
                Err(Error::Runtime(e)) => return Err(e),
                // Readers check the flag when told to try again, and stop.
                Err(Error::Cancelled) => {
                    return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"))
                }
                Err(e @ (Error::Redirect(_) | Error::HopGone { .. })) => {
                    return Err(io::Error::other(e.to_string()))
                }
            }
        }
        Ok(true)
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || !self.fill()? {
            return Ok(0);
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cancel_soon, client};
    use super::*;
    use crate::server::{Fault, Reply, Server};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_wait_for_body_bytes_ends_when_cancelled() {
        let server = Server::start(|_| {
            Reply::file(vec![7u8; 1000]).with_fault(Fault::StallAfter(10, Duration::from_secs(30)))
        })
        .unwrap();
        let cancel = Arc::new(AtomicBool::new(false));
        let url = Url::parse(&server.url("/stall")).unwrap();
        let mut response = client(&cancel).get(url).send().unwrap();
        let mut buf = [0u8; 100];
        let mut got = 0;
        while got < 10 {
            got += response.read(&mut buf).unwrap();
        }
        let setter = cancel_soon(&cancel);
        let err = response.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err}");
        setter.join().unwrap();
    }
}
