//! `conninfo`: answers with what the request knows of its connection, one `key=value` per
//! line: `peer`, `local` (`-` over a Unix socket) and `scheme`; over TLS also `tls` (the
//! version), `cipher`, `sni`, `alpn` and `client` (the subject of the client's certificate),
//! each `-` when there is none.

use std::io::Write;

use crate::{Request, Response};

pub fn handle(req: &Request<'_>, res: &mut Response<'_>) {
    let show =
        |a: Option<std::net::SocketAddr>| a.map_or_else(|| "-".to_string(), |a| a.to_string());
    res.header("Content-Type", "text/plain");
    let body = res.body_mut();
    // Writing into a Vec cannot fail.
    let _ = write!(
        body,
        "peer={}\nlocal={}\nscheme={}\n",
        show(req.peer_addr()),
        show(req.local_addr()),
        req.scheme().as_str()
    );
    if let Some(tls) = req.tls() {
        let client = tls
            .client_certs
            .first()
            .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
            .map_or_else(|| "-".to_string(), |(_, cert)| cert.subject().to_string());
        let _ = write!(
            body,
            "tls={}\ncipher={}\nsni={}\nalpn={}\nclient={}\n",
            tls.version,
            tls.cipher,
            tls.server_name.as_deref().unwrap_or("-"),
            tls.alpn.as_deref().unwrap_or("-"),
            client
        );
    }
}
