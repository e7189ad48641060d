//! TLS settings, loaded and checked: certificate chains and keys from PEM files, the names
//! SNI chooses them by, client-certificate verification, and the one [`ServerConfig`] every
//! worker shares, so that a session resumes whichever core its next connection lands on.
//!
//! Every problem with a file is one error naming the file: unreadable, not PEM, no
//! certificate or no key in it, a key that does not match its certificate, a certificate
//! that has expired or is not valid yet. At startup that is exit 1; on a reload (HUP) the
//! server keeps the certificates it has and logs the error.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

/// Session IDs (TLS 1.2 clients without tickets) the shared cache remembers.
const SESSION_CACHE: usize = 16 * 1024;

/// `--cert-reqs`: whether clients must present a certificate (Gunicorn's `cert_reqs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CertReqs {
    /// No client certificate is asked for.
    #[default]
    #[value(name = "none", alias = "0")]
    None,
    /// Asked for; a client without one is served, one with an invalid one is refused.
    #[value(name = "optional", alias = "1")]
    Optional,
    /// Required: a client without a valid certificate (signed by --ca-certs) is refused.
    #[value(name = "required", alias = "2")]
    Required,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// `--certfile` and `--keyfile`, paired in order; the first pair answers clients whose
    /// SNI name no certificate covers (or that send none).
    pub certfiles: Vec<PathBuf>,
    pub keyfiles: Vec<PathBuf>,
    /// `--ca-certs`: the roots client certificates must chain to.
    pub ca_certs: Option<PathBuf>,
    pub cert_reqs: CertReqs,
}

/// One loaded certificate, as the startup log shows it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub certfile: PathBuf,
    pub names: Vec<String>,
    pub not_after: String,
}

/// The loaded settings: the shared configuration, and what was loaded.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub loaded: Vec<Loaded>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("loaded", &self.loaded).finish()
    }
}

impl Tls {
    /// Load the files of `settings`. `previous` (a reload): its ticket keys and session cache
    /// carry over, so clients resume across a reload.
    pub fn load(settings: &Settings, previous: Option<&Tls>) -> Result<Tls, String> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        if settings.certfiles.len() != settings.keyfiles.len() {
            return Err(format!(
                "each --certfile needs its --keyfile, in the same order ({} certificate \
                 file(s), {} key file(s))",
                settings.certfiles.len(),
                settings.keyfiles.len()
            ));
        }
        let mut loaded = Vec::new();
        let mut keys = Vec::new();
        for (certfile, keyfile) in settings.certfiles.iter().zip(&settings.keyfiles) {
            let (key, info) = load_pair(certfile, keyfile, &provider)?;
            keys.push((Arc::new(key), info.names.clone()));
            loaded.push(info);
        }
        let resolver = ByName::new(keys).ok_or("--certfile: at least one is needed for TLS")?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match (settings.cert_reqs, &settings.ca_certs) {
            (CertReqs::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(
                    "--cert-reqs optional or required needs --ca-certs (the roots \
                            client certificates must chain to)"
                        .into(),
                )
            }
            (reqs, Some(ca)) => {
                let roots = load_roots(ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match reqs {
                    CertReqs::Optional => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| format!("--ca-certs {}: {e}", ca.display()))?,
                )
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        // HTTP/1.1 only, for now; `h2` would be added here.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        match previous {
            Some(p) => {
                config.ticketer = p.config.ticketer.clone();
                config.session_storage = p.config.session_storage.clone();
            }
            None => {
                config.ticketer = Arc::new(super::tickets::SharedTickets::new()?);
                config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
            }
        }
        Ok(Tls {
            config: Arc::new(config),
            loaded,
        })
    }
}

/// A certificate chain and its key, checked: they match, and the certificate is valid now.
fn load_pair(
    certfile: &Path,
    keyfile: &Path,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, Loaded), String> {
    let chain = load_certs(certfile, "--certfile")?;
    let key =
        PrivateKeyDer::from_pem_file(keyfile).map_err(|e| pem_error("--keyfile", keyfile, e))?;
    let info = describe(certfile, &chain[0])?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "--keyfile {}: this key does not match the certificate in {}",
            keyfile.display(),
            certfile.display()
        ),
        e => format!(
            "--keyfile {}: the key cannot be used: {e}",
            keyfile.display()
        ),
    })?;
    Ok((key, info))
}

/// Every certificate in a PEM file (at least one).
fn load_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(flag, path, e))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, "--ca-certs")? {
        roots
            .add(cert)
            .map_err(|e| format!("--ca-certs {}: {e}", path.display()))?;
    }
    Ok(roots)
}

fn pem_error(flag: &str, path: &Path, e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => format!("{flag} {}: cannot read it: {e}", path.display()),
        Error::NoItemsFound => format!(
            "{flag} {}: no private key in it (expected PEM: -----BEGIN PRIVATE KEY-----, \
             RSA PRIVATE KEY or EC PRIVATE KEY)",
            path.display()
        ),
        e => format!("{flag} {}: not a valid PEM file: {e}", path.display()),
    }
}

/// The names a certificate is for (its DNS subject alternative names, else its common name)
/// and its expiry; an error if it is not valid now.
fn describe(certfile: &Path, cert: &CertificateDer<'_>) -> Result<Loaded, String> {
    let shown = certfile.display();
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| format!("--certfile {shown}: not a valid X.509 certificate: {e}"))?;
    let validity = parsed.validity();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if now > validity.not_after.timestamp() {
        return Err(format!(
            "--certfile {shown}: the certificate expired on {}",
            validity.not_after
        ));
    }
    if now < validity.not_before.timestamp() {
        return Err(format!(
            "--certfile {shown}: the certificate is not valid before {}",
            validity.not_before
        ));
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = parsed.subject().iter_common_name().next() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    Ok(Loaded {
        certfile: certfile.to_path_buf(),
        names,
        not_after: validity.not_after.to_string(),
    })
}

/// Chooses the certificate by the SNI name, as nginx chooses a server block: an exact name,
/// else a wildcard one level up (`*.example.com`), else the first certificate. Where two
/// certificates name the same host, the one listed first is used.
#[derive(Debug)]
struct ByName {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl ByName {
    fn new(keys: Vec<(Arc<CertifiedKey>, Vec<String>)>) -> Option<ByName> {
        let default = keys.first()?.0.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (key, names) in keys {
            for name in names {
                let entry = match name.strip_prefix("*.").map(str::to_string) {
                    Some(parent) => wildcard.entry(parent),
                    None => exact.entry(name),
                };
                entry.or_insert_with(|| key.clone());
            }
        }
        Some(ByName {
            default,
            exact,
            wildcard,
        })
    }

    fn choose(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name else {
            return &self.default;
        };
        let name = name.trim_end_matches('.');
        if let Some(key) = self.exact.get(name) {
            return key;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls gives the SNI name lowercased.
        Some(self.choose(hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> (Arc<CertifiedKey>, Vec<String>) {
        let generated = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
        let der = PrivateKeyDer::try_from(generated.key_pair.serialize_der()).expect("key");
        let provider = aws_lc_rs::default_provider();
        let key = CertifiedKey::from_der(vec![generated.cert.der().clone()], der, &provider)
            .expect("matches");
        (Arc::new(key), vec![name.to_string()])
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_first() {
        let (a, b, c) = (key("a.test"), key("*.b.test"), key("c.test"));
        let (ka, kb, kc) = (a.0.clone(), b.0.clone(), c.0.clone());
        let by = ByName::new(vec![a, b, c]).expect("one at least");
        assert!(Arc::ptr_eq(by.choose(Some("a.test")), &ka));
        assert!(
            Arc::ptr_eq(by.choose(Some("c.test.")), &kc),
            "a trailing dot"
        );
        assert!(Arc::ptr_eq(by.choose(Some("x.b.test")), &kb));
        assert!(
            Arc::ptr_eq(by.choose(Some("y.x.b.test")), &ka),
            "one level only"
        );
        assert!(
            Arc::ptr_eq(by.choose(Some("b.test")), &ka),
            "not the bare parent"
        );
        assert!(Arc::ptr_eq(by.choose(Some("other.test")), &ka));
        assert!(Arc::ptr_eq(by.choose(None), &ka));
    }
}
