//! A TLS front for a node's JSON-RPC: what a lab puts before a node it reaches over https:// (the
//! node itself serves plain HTTP, as geth and reth do). It terminates TLS with a certificate made by
//! [`crate::bridge::make_certs`] (rustls, ring) and copies bytes both ways to the node's port; it
//! neither reads nor changes the HTTP, so what a client gets is the real node's answer.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A running TLS front; stops when dropped.
pub struct TlsProxy {
    /// Its port on 127.0.0.1 (`https://127.0.0.1:<port>`).
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsProxy {
    /// Serves TLS with `cert` and `key` (PEM files) on a free port and forwards each connection to
    /// `upstream`.
    pub fn start(cert: &Path, key: &Path, upstream: SocketAddr) -> Self {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert).unwrap().collect::<Result<_, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    _ = serve(listener, acceptor, upstream) => {}
                    _ = stopped => {}
                }
            });
        });
        Self { port, stop: Some(stop), thread: Some(thread) }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, upstream: SocketAddr) {
    loop {
        let Ok((socket, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // A client that refuses the certificate ends its handshake here: nothing to forward.
            let Ok(mut tls) = acceptor.accept(socket).await else { return };
            let Ok(mut node) = TcpStream::connect(upstream).await else { return };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut node).await;
        });
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
