//! Throwaway certificate authorities and certificates for TLS tests, made
//! with the `openssl` command exactly as docs/security.md tells operators
//! to make a test setup.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate authority in a directory, and the certificates it signed.
pub struct TestCa {
    dir: PathBuf,
    name: String,
}

/// `openssl req` arguments that make a new P-256 key, unencrypted.
const NEW_KEY: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

impl TestCa {
    /// A new authority named `name`, its files in `dir` (`NAME-ca.pem`,
    /// `NAME-ca.key`).
    pub fn new(dir: &Path, name: &str) -> TestCa {
        std::fs::create_dir_all(dir).unwrap();
        let (cert, key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
        openssl(
            &[
                &["req", "-x509"][..],
                &NEW_KEY,
                &[
                    "-keyout",
                    &key,
                    "-out",
                    &cert,
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN={name} test CA"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
            dir,
        );
        TestCa { dir: dir.to_path_buf(), name: name.to_string() }
    }

    /// The authority's certificate.
    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A server certificate for 127.0.0.1 and localhost: `(cert, key)`.
    pub fn server(&self, file_name: &str) -> (PathBuf, PathBuf) {
        self.issue(file_name, "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    }

    /// A client certificate whose common name is `common_name`:
    /// `(cert, key)`.
    pub fn client(&self, file_name: &str, common_name: &str) -> (PathBuf, PathBuf) {
        self.issue(file_name, common_name, "extendedKeyUsage=clientAuth\n")
    }

    fn issue(&self, file_name: &str, common_name: &str, extensions: &str) -> (PathBuf, PathBuf) {
        let (cert, key, csr, ext) = (
            format!("{file_name}.pem"),
            format!("{file_name}.key"),
            format!("{file_name}.csr"),
            format!("{file_name}.ext"),
        );
        std::fs::write(
            self.dir.join(&ext),
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"),
        )
        .unwrap();
        openssl(
            &[&["req"][..], &NEW_KEY, &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={common_name}")]]
                .concat(),
            &self.dir,
        );
        let (ca_cert, ca_key) = (format!("{}-ca.pem", self.name), format!("{}-ca.key", self.name));
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
            &self.dir,
        );
        (self.dir.join(cert), self.dir.join(key))
    }
}
