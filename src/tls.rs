//! TLS with one certificate pair, as classic Swarm: the API front serves it, and the manager
//! presents it as a client to engines and to other managers. `--tls` encrypts without checking
//! peers; `--tlsverify` requires client certificates signed by `--tlscacert` and checks engines
//! and managers against that CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// TLS files for the key-value store (`--discovery-opt kv.cacertfile=…` and the like): etcd's,
/// or the managers' for `swarm://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvTls {
    /// CA that signed the store's certificate.
    pub ca: PathBuf,
    /// Client certificate.
    pub cert: PathBuf,
    /// Client key.
    pub key: PathBuf,
}

/// The files named by `--tlscacert`, `--tlscert` and `--tlskey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--tlsverify`: check peers against `ca`.
    pub verify: bool,
    /// The CA certificate(s), PEM.
    pub ca: Option<PathBuf>,
    /// This manager's certificate chain, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

/// Loaded TLS settings for both directions.
#[derive(Clone)]
pub struct Tls {
    /// For the API front.
    pub server: Arc<ServerConfig>,
    /// For calls to engines (checked under `--tlsverify` only, as classic Swarm did).
    pub client: Arc<ClientConfig>,
    /// For calls to other managers (Raft RPCs, requests forwarded to the leader, which carry
    /// clients' registry credentials): checked against `--tlscacert` whenever one is given,
    /// under `--tls` too.
    pub peer: Arc<ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file is missing or not PEM of the right kind.
    #[error("cannot load {what} from {path}: {detail}")]
    File {
        /// Which file.
        what: &'static str,
        /// Where.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The files do not make a usable configuration (a key that does not match, say).
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

impl Tls {
    /// Reads the files and builds both configurations.
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let pair = Pair::read(files)?;
        Ok(Tls {
            server: pair.server()?,
            client: pair.client(pair.roots.clone())?,
            peer: pair.client(pair.ca.clone())?,
        })
    }
}

/// Only the client side, for commands that call managers (`swarm members`, `swarm://`).
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let pair = Pair::read(files)?;
    pair.client(pair.roots.clone())
}

/// The files, read and parsed.
struct Pair {
    provider: Arc<CryptoProvider>,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The CA, when peers are checked (`--tlsverify`).
    roots: Option<Arc<RootCertStore>>,
    /// The CA, whenever one is given.
    ca: Option<Arc<RootCertStore>>,
}

impl Pair {
    fn read(files: &TlsFiles) -> Result<Pair, TlsError> {
        let certs = read_certs(&files.cert, "the certificate (--tlscert)")?;
        let key =
            PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error("the key (--tlskey)", &files.key, e))?;
        let (mut roots, mut ca_roots) = (None, None);
        if let Some(ca) = &files.ca {
            let mut store = RootCertStore::empty();
            for cert in read_certs(ca, "the CA certificate (--tlscacert)")? {
                store.add(cert).map_err(|e| file_error("the CA certificate (--tlscacert)", ca, e))?;
            }
            // Under plain `--tls`, used only to check other managers.
            let store = Arc::new(store);
            roots = files.verify.then(|| store.clone());
            ca_roots = Some(store);
        }
        Ok(Pair { provider: Arc::new(rustls::crypto::ring::default_provider()), certs, key, roots, ca: ca_roots })
    }

    fn server(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let builder = match &self.roots {
            Some(roots) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), self.provider.clone())
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(builder.with_single_cert(self.certs.clone(), self.key.clone_key()).map_err(config_error)?))
    }

    /// A client that checks servers against `roots`, or accepts any without.
    fn client(&self, roots: Option<Arc<RootCertStore>>) -> Result<Arc<ClientConfig>, TlsError> {
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let builder = match roots {
            Some(roots) => builder.with_root_certificates(roots.clone()),
            // Classic `--tls`: engines are dialled without checking their certificate.
            None => builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyServer(self.provider.clone()))),
        };
        Ok(Arc::new(builder.with_client_auth_cert(self.certs.clone(), self.key.clone_key()).map_err(config_error)?))
    }
}

fn config_error(e: rustls::Error) -> TlsError {
    TlsError::Config(e.to_string())
}

/// The name to check a peer's certificate against: its host, IP or DNS name.
pub fn server_name(authority: &str) -> Option<ServerName<'static>> {
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string()).ok()
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no certificate in the file"));
    }
    Ok(certs)
}

fn file_error(what: &'static str, path: &Path, detail: impl std::fmt::Display) -> TlsError {
    TlsError::File { what, path: path.display().to_string(), detail: detail.to_string() }
}

/// Accepts any server certificate but still checks the handshake signatures (`--tls`).
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host_part() {
        assert_eq!(server_name("127.0.0.1:2376"), Some(ServerName::try_from("127.0.0.1").unwrap().to_owned()));
        assert_eq!(
            server_name("node-1.example:2376"),
            Some(ServerName::try_from("node-1.example").unwrap().to_owned())
        );
        assert_eq!(server_name("[::1]:2376"), Some(ServerName::try_from("::1").unwrap().to_owned()));
    }

    #[test]
    fn missing_files_are_named() {
        let files = TlsFiles {
            verify: true,
            ca: None,
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let e = Tls::load(&files).unwrap_err().to_string();
        assert!(e.starts_with("cannot load the certificate (--tlscert) from /nonexistent/cert.pem"), "{e}");
    }
}
