//! Test certificates made with the real `openssl` CLI: a CA and one pair it signs for
//! 127.0.0.1 and localhost, good for serving and for client authentication, laid out as the
//! docker CLI's `DOCKER_CERT_PATH` wants (ca.pem, cert.pem, key.pem).

use std::path::Path;
use std::process::Command;

use super::{require, run, stderr, unique_dir};

/// A directory holding ca.pem, cert.pem and key.pem.
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    /// A fresh CA named `ca_name` and a pair signed by it.
    pub fn new(ca_name: &str) -> Certs {
        let openssl = require("openssl", "openssl");
        let dir = unique_dir("swarm-certs-");
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let step = |args: &[&str]| {
            let o = run(Command::new(&openssl).current_dir(d).args(args));
            assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
        };
        step(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", &format!("/CN={ca_name}")],
            ]
            .concat(),
        );
        step(&[&["req"][..], &ec, &["-keyout", "key.pem", "-out", "req.csr", "-subj", "/CN=localhost"]].concat());
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("ext.cnf");
        step(&[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        Certs { dir }
    }

    /// The directory (`DOCKER_CERT_PATH`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `dir/name` as a string, for flags.
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}
