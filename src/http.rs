//! HTTP clients for what shipdeck calls out to (webhooks, Prometheus, the pods): reqwest over
//! rustls with the ring crypto provider, so `https` works without a C toolchain beyond the one
//! the bundled SQLite already needs.

/// A client builder with TLS ready: the ring provider is installed as the process default the
/// first time (a later call, or another library having installed one, changes nothing).
pub fn client_builder() -> reqwest::ClientBuilder {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    /// An https URL gets a TLS handshake (a ClientHello record: 0x16, then version 3.x), not a
    /// refusal for want of a TLS stack or a crypto provider.
    #[tokio::test]
    async fn https_speaks_tls() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
        let client = super::client_builder().build().expect("a client with TLS");
        let request = tokio::spawn(async move { client.post(url).body("{}").send().await });
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 2];
        socket.read_exact(&mut head).await.unwrap();
        assert_eq!(head, [0x16, 0x03], "a TLS handshake record");
        drop(socket);
        assert!(request.await.unwrap().is_err(), "no server certificate, no request");
    }
}
